//! The `#[task]` attribute of `osiiso-guest`. Use it through `osiiso_guest::task`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitInt, LitStr, Pat, ReturnType, Type, parse_macro_input};

/// Marks a plain function as a task of this plugin.
///
/// The function's arguments are decoded from the JSON input with serde (one argument decodes
/// from the input itself, several from a JSON array); its return value is encoded as JSON.
/// Return `Result<T, TaskError>` (or `Result<T, E>` for any `E: Into<TaskError>`) to fail.
/// The doc comment becomes the task's description.
///
/// Options: `name = "..."` (default: the function name), `retries = N`, `timeout = "5s"`
/// (suggested defaults the caller's options override).
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = TaskAttr::default();
    let parser = syn::meta::parser(|meta| options.parse(meta));
    parse_macro_input!(attr with parser);
    let function = parse_macro_input!(item as ItemFn);
    expand(options, function)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct TaskAttr {
    name: Option<String>,
    retries: Option<u32>,
    timeout_ms: Option<u64>,
}

impl TaskAttr {
    fn parse(&mut self, meta: syn::meta::ParseNestedMeta) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            self.name = Some(meta.value()?.parse::<LitStr>()?.value());
        } else if meta.path.is_ident("retries") {
            self.retries = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
        } else if meta.path.is_ident("timeout") {
            let lit = meta.value()?.parse::<LitStr>()?;
            let ms = parse_duration_ms(&lit.value()).ok_or_else(|| {
                syn::Error::new(
                    lit.span(),
                    "timeout must be a duration like \"250ms\", \"5s\", \"2m\" or \"1h\"",
                )
            })?;
            if ms == 0 {
                return Err(syn::Error::new(lit.span(), "timeout must be > 0"));
            }
            self.timeout_ms = Some(ms);
        } else {
            return Err(meta.error("unknown #[task] option (expected name, retries or timeout)"));
        }
        Ok(())
    }
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn expand(options: TaskAttr, function: ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let fn_name = &function.sig.ident;
    let task_name = options.name.unwrap_or_else(|| fn_name.to_string());
    if function.sig.asyncness.is_some() {
        return Err(syn::Error::new(
            function.sig.span(),
            "#[task] functions must be synchronous",
        ));
    }
    if !function.sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            function.sig.generics.span(),
            "#[task] functions cannot be generic",
        ));
    }

    let description = doc_comment(&function.attrs);
    let mut arg_types = Vec::new();
    for arg in &function.sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "#[task] functions take no `self`",
                ));
            }
            FnArg::Typed(typed) => {
                if let Type::Reference(r) = &*typed.ty {
                    return Err(syn::Error::new(
                        r.span(),
                        "#[task] arguments must be owned (use String instead of &str)",
                    ));
                }
                if !matches!(&*typed.pat, Pat::Ident(_) | Pat::Wild(_)) {
                    return Err(syn::Error::new(
                        typed.pat.span(),
                        "use a plain argument name",
                    ));
                }
                arg_types.push((*typed.ty).clone());
            }
        }
    }

    let args: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("arg{i}"))
        .collect();
    let decode = match arg_types.len() {
        0 => quote! { let _ = input; },
        1 => {
            let ty = &arg_types[0];
            let arg = &args[0];
            quote! { let #arg: #ty = __p::decode_args(#task_name, input)?; }
        }
        _ => quote! {
            let (#(#args,)*): (#(#arg_types,)*) = __p::decode_args(#task_name, input)?;
        },
    };
    let call = quote! { #fn_name(#(#args),*) };
    let output = if returns_result(&function.sig.output) {
        quote! { #call.map_err(::core::convert::Into::<::osiiso_guest::TaskError>::into)? }
    } else {
        call
    };
    let schema = match input_schema(&arg_types) {
        Some(s) => quote! { ::core::option::Option::Some(#s) },
        None => quote! { ::core::option::Option::None },
    };
    let retries = match options.retries {
        Some(n) => quote! { ::core::option::Option::Some(#n) },
        None => quote! { ::core::option::Option::None },
    };
    let timeout_ms = match options.timeout_ms {
        Some(n) => quote! { ::core::option::Option::Some(#n) },
        None => quote! { ::core::option::Option::None },
    };
    let invoke = format_ident!("__osiiso_invoke_{}", fn_name);

    Ok(quote! {
        #function

        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #invoke(input: &str) -> ::core::result::Result<::std::string::String, ::osiiso_guest::TaskError> {
            use ::osiiso_guest::__private as __p;
            #decode
            let output = #output;
            __p::encode_output(#task_name, &output)
        }

        ::osiiso_guest::__private::inventory::submit! {
            ::osiiso_guest::__private::TaskDef {
                name: #task_name,
                description: #description,
                input_schema: #schema,
                retries: #retries,
                timeout_ms: #timeout_ms,
                invoke: #invoke,
            }
        }
    })
}

fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_string()
}

fn returns_result(output: &ReturnType) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return false;
    };
    let Type::Path(path) = &**ty else {
        return false;
    };
    path.path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "Result")
}

/// A JSON Schema for the input, for the types whose schema is obvious from their name.
fn input_schema(types: &[Type]) -> Option<String> {
    match types {
        [] => None,
        [ty] => type_schema(ty),
        many => {
            let items: Option<Vec<String>> = many.iter().map(type_schema).collect();
            let items = items?;
            Some(format!(
                r#"{{"type":"array","prefixItems":[{}],"minItems":{n},"maxItems":{n}}}"#,
                items.join(","),
                n = many.len()
            ))
        }
    }
}

fn type_schema(ty: &Type) -> Option<String> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    let name = segment.ident.to_string();
    let schema = match name.as_str() {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            r#"{"type":"integer","minimum":0}"#.into()
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => r#"{"type":"integer"}"#.into(),
        "f32" | "f64" => r#"{"type":"number"}"#.into(),
        "bool" => r#"{"type":"boolean"}"#.into(),
        "String" | "char" => r#"{"type":"string"}"#.into(),
        "Value" => "{}".into(),
        "Vec" => {
            let inner = match &segment.arguments {
                syn::PathArguments::AngleBracketed(a) => match a.args.first() {
                    Some(syn::GenericArgument::Type(t)) => type_schema(t),
                    _ => None,
                },
                _ => None,
            };
            match inner {
                Some(items) => format!(r#"{{"type":"array","items":{items}}}"#),
                None => r#"{"type":"array"}"#.into(),
            }
        }
        _ => return None,
    };
    Some(schema)
}
