//! A component written with plain `wit-bindgen` against its own WIT (`wit/calc.wit`), without
//! the osiiso SDK: osiiso-host offers each exported function as a task and converts JSON to
//! and from the WIT types. The same WIT is implemented in JavaScript (`js/calc.js`,
//! componentize-js) and Python (`py/app.py`, componentize-py).

use std::cell::Cell;

use exports::acme::calc::counters::{self, GuestCounter};
use exports::acme::calc::shapes::{self, Drawing, Point, Shape, Style, Unit};
use exports::acme::calc::stats::{self, StatsError, Summary};

wit_bindgen::generate!({ path: "wit", world: "calc" });

struct Calc;

impl Guest for Calc {
    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn checksum(data: Vec<u8>) -> u64 {
        data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn divide(a: f64, b: f64) -> Result<f64, String> {
        if b == 0.0 {
            Err(format!("cannot divide {a} by zero"))
        } else {
            Ok(a / b)
        }
    }

    fn reciprocal(x: f64) -> f64 {
        1.0 / x
    }

    fn initial(name: String) -> Option<char> {
        name.chars().next()
    }

    fn maybe(x: Option<Option<u32>>) -> Option<Option<u32>> {
        x
    }

    fn spin(rounds: u64) -> u64 {
        let mut x = 0u64;
        for i in 0..rounds {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        x
    }
}

impl stats::Guest for Calc {
    fn summarize(values: Vec<f64>) -> Result<Summary, StatsError> {
        if values.is_empty() {
            return Err(StatsError::Empty);
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::NotFinite);
        }
        let sum: f64 = values.iter().sum();
        Ok(Summary {
            count: values.len() as u32,
            mean: sum / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

impl shapes::Guest for Calc {
    fn area(shape: Shape) -> f64 {
        match shape {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rectangle((w, h)) => w * h,
            Shape::Polygon(points) => {
                let n = points.len();
                let twice: f64 = (0..n)
                    .map(|i| {
                        let (a, b) = (&points[i], &points[(i + 1) % n]);
                        a.x * b.y - b.x * a.y
                    })
                    .sum();
                twice.abs() / 2.0
            }
            Shape::Dot => 0.0,
        }
    }

    fn describe(drawing: Drawing) -> String {
        let shape = match &drawing.shape {
            Shape::Circle(r) => format!("circle r={r}"),
            Shape::Rectangle((w, h)) => format!("rectangle {w}x{h}"),
            Shape::Polygon(points) => format!("polygon of {}", points.len()),
            Shape::Dot => "dot".to_string(),
        };
        let unit = match drawing.unit {
            Some(Unit::Mm) => "mm",
            Some(Unit::Cm) => "cm",
            Some(Unit::M) => "m",
            None => "-",
        };
        let mut style = Vec::new();
        for (flag, name) in [
            (Style::BOLD, "bold"),
            (Style::ITALIC, "italic"),
            (Style::UNDERLINE, "underline"),
        ] {
            if drawing.style.contains(flag) {
                style.push(name);
            }
        }
        format!(
            "{}: {shape} at ({}, {}){} unit={unit} style=[{}] tags=[{}]",
            drawing.name,
            drawing.at.x,
            drawing.at.y,
            drawing
                .at
                .label
                .as_deref()
                .map(|l| format!(" '{l}'"))
                .unwrap_or_default(),
            style.join(","),
            drawing.tags.join(",")
        )
    }

    fn translate(p: Point, dx: f64, dy: f64) -> Point {
        Point {
            x: p.x + dx,
            y: p.y + dy,
            label: p.label,
        }
    }

    fn parse_style(names: Vec<String>) -> Result<Style, String> {
        let mut style = Style::empty();
        for name in names {
            style |= match name.as_str() {
                "bold" => Style::BOLD,
                "italic" => Style::ITALIC,
                "underline" => Style::UNDERLINE,
                other => return Err(format!("unknown style '{other}'")),
            };
        }
        Ok(style)
    }

    fn mirror(shape: Shape) -> Shape {
        shape
    }
}

/// The counter resource.
struct Counter {
    next: Cell<u32>,
}

impl GuestCounter for Counter {
    fn new(start: u32) -> Self {
        Self {
            next: Cell::new(start),
        }
    }

    fn next(&self) -> u32 {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        n
    }
}

impl counters::Guest for Calc {
    type Counter = Counter;

    fn make(start: u32) -> counters::Counter {
        counters::Counter::new(Counter::new(start))
    }
}

export!(Calc);
