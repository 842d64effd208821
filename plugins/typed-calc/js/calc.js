// typed-calc in JavaScript: the WIT of ../wit/calc.wit implemented with componentize-js, as a
// new user would, knowing nothing about osiiso-host. osiiso-host offers each export as a
// task and converts JSON to and from these types.
//
// Build: componentize-js calc.js --wit ../wit --world-name calc -o typed-calc-js.wasm
//
// componentize-js (jco) conventions: s64/u64 are BigInt, list<u8> a Uint8Array, a variant
// `{ tag, val }`, flags an object of booleans, and throwing `{ payload }` returns `err`.

const MASK = (1n << 64n) - 1n;

/** Throws `payload` as the `err` of a function that returns `result`. */
function fail(payload) {
    const error = new Error(String(payload));
    error.payload = payload;
    throw error;
}

export function add(a, b) {
    return BigInt.asIntN(64, a + b);
}

export function checksum(data) {
    let hash = 0xcbf29ce484222325n;
    for (const byte of data) {
        hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & MASK;
    }
    return hash;
}

export function divide(a, b) {
    if (b === 0) fail(`cannot divide ${a} by zero`);
    return a / b;
}

export function reciprocal(x) {
    return 1 / x;
}

export function initial(name) {
    const first = [...name][0];
    return first === undefined ? undefined : first;
}

export function maybe(x) {
    return x;
}

export function spin(rounds) {
    let x = 0n;
    for (let i = 0n; i < rounds; i++) {
        x = (x * 31n + i) & MASK;
    }
    return x;
}

export const stats = {
    summarize(values) {
        const list = Array.from(values);
        if (list.length === 0) fail("empty");
        if (!list.every(Number.isFinite)) fail("not-finite");
        const sum = list.reduce((a, b) => a + b, 0);
        return {
            count: list.length,
            mean: sum / list.length,
            min: Math.min(...list),
            max: Math.max(...list),
        };
    },
};

const STYLES = ["bold", "italic", "underline"];

function describeShape(shape) {
    switch (shape.tag) {
        case "circle":
            return `circle r=${shape.val}`;
        case "rectangle":
            return `rectangle ${shape.val[0]}x${shape.val[1]}`;
        case "polygon":
            return `polygon of ${shape.val.length}`;
        default:
            return "dot";
    }
}

export const shapes = {
    area(shape) {
        switch (shape.tag) {
            case "circle":
                return Math.PI * shape.val * shape.val;
            case "rectangle":
                return shape.val[0] * shape.val[1];
            case "polygon": {
                const points = shape.val;
                let twice = 0;
                for (let i = 0; i < points.length; i++) {
                    const a = points[i];
                    const b = points[(i + 1) % points.length];
                    twice += a.x * b.y - b.x * a.y;
                }
                return Math.abs(twice) / 2;
            }
            default:
                return 0;
        }
    },

    describe(drawing) {
        const label = drawing.at.label === undefined || drawing.at.label === null ? "" : ` '${drawing.at.label}'`;
        const unit = drawing.unit === undefined || drawing.unit === null ? "-" : drawing.unit;
        const style = STYLES.filter((name) => drawing.style[name]).join(",");
        return (
            `${drawing.name}: ${describeShape(drawing.shape)} at (${drawing.at.x}, ${drawing.at.y})${label} ` +
            `unit=${unit} style=[${style}] tags=[${drawing.tags.join(",")}]`
        );
    },

    translate(p, dx, dy) {
        return { x: p.x + dx, y: p.y + dy, label: p.label };
    },

    parseStyle(names) {
        const style = { bold: false, italic: false, underline: false };
        for (const name of names) {
            if (!STYLES.includes(name)) fail(`unknown style '${name}'`);
            style[name] = true;
        }
        return style;
    },

    mirror(shape) {
        return shape;
    },
};

class Counter {
    constructor(start) {
        this.n = start;
    }

    next() {
        const n = this.n;
        this.n = (n + 1) >>> 0;
        return n;
    }
}

export const counters = {
    Counter,
    make(start) {
        return new Counter(start);
    },
};
