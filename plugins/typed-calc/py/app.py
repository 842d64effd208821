"""typed-calc in Python: the WIT of ../wit/calc.wit implemented with componentize-py, as a
new user would, knowing nothing about osiiso-host. osiiso-host offers each export as a task
and converts JSON to and from these types.

Build: componentize-py -d ../wit -w calc componentize app -o typed-calc-py.wasm
"""

import math

import wit_world
from componentize_py_types import Err, Some
from wit_world import exports
from wit_world.exports import shapes, stats

# componentize-py finds the class of an exported resource in the module named after its
# interface.
from counters import Counter

MASK = (1 << 64) - 1


def _wrap_s64(n):
    n &= MASK
    return n - (1 << 64) if n >= 1 << 63 else n


def _num(x):
    """A float as Rust's `{}` prints it: integral values without a fraction."""
    return str(int(x)) if x == int(x) else repr(x)


class WitWorld(wit_world.WitWorld):
    def add(self, a, b):
        return _wrap_s64(a + b)

    def checksum(self, data):
        h = 0xCBF29CE484222325
        for byte in data:
            h = ((h ^ byte) * 0x100000001B3) & MASK
        return h

    def divide(self, a, b):
        if b == 0:
            raise Err(f"cannot divide {_num(a)} by zero")
        return a / b

    def reciprocal(self, x):
        if x == 0:
            return math.copysign(math.inf, x)
        return 1 / x

    def initial(self, name):
        return name[0] if name else None

    def maybe(self, x):
        return x

    def spin(self, rounds):
        x = 0
        for i in range(rounds):
            x = (x * 31 + i) & MASK
        return x


class Stats(exports.Stats):
    def summarize(self, values):
        if not values:
            raise Err(stats.StatsError.EMPTY)
        if not all(math.isfinite(v) for v in values):
            raise Err(stats.StatsError.NOT_FINITE)
        return stats.Summary(
            count=len(values), mean=sum(values) / len(values), min=min(values), max=max(values)
        )


class Shapes(exports.Shapes):
    def area(self, shape):
        if isinstance(shape, shapes.Shape_Circle):
            return math.pi * shape.value * shape.value
        if isinstance(shape, shapes.Shape_Rectangle):
            w, h = shape.value
            return w * h
        if isinstance(shape, shapes.Shape_Polygon):
            points = shape.value
            n = len(points)
            twice = sum(
                points[i].x * points[(i + 1) % n].y - points[(i + 1) % n].x * points[i].y
                for i in range(n)
            )
            return abs(twice) / 2
        return 0.0

    def describe(self, drawing):
        shape = drawing.shape
        if isinstance(shape, shapes.Shape_Circle):
            text = f"circle r={_num(shape.value)}"
        elif isinstance(shape, shapes.Shape_Rectangle):
            text = f"rectangle {_num(shape.value[0])}x{_num(shape.value[1])}"
        elif isinstance(shape, shapes.Shape_Polygon):
            text = f"polygon of {len(shape.value)}"
        else:
            text = "dot"
        unit = drawing.unit.name.lower() if drawing.unit is not None else "-"
        style = ",".join(
            name
            for flag, name in [
                (shapes.Style.BOLD, "bold"),
                (shapes.Style.ITALIC, "italic"),
                (shapes.Style.UNDERLINE, "underline"),
            ]
            if flag in drawing.style
        )
        label = f" '{drawing.at.label}'" if drawing.at.label is not None else ""
        return (
            f"{drawing.name}: {text} at ({_num(drawing.at.x)}, {_num(drawing.at.y)}){label} "
            f"unit={unit} style=[{style}] tags=[{','.join(drawing.tags)}]"
        )

    def translate(self, p, dx, dy):
        return shapes.Point(x=p.x + dx, y=p.y + dy, label=p.label)

    def parse_style(self, names):
        style = shapes.Style(0)
        for name in names:
            flag = {"bold": shapes.Style.BOLD, "italic": shapes.Style.ITALIC,
                    "underline": shapes.Style.UNDERLINE}.get(name)
            if flag is None:
                raise Err(f"unknown style '{name}'")
            style |= flag
        return style

    def mirror(self, shape):
        return shape


class Counters(exports.Counters):
    def make(self, start):
        return Counter(start)


__all__ = ["WitWorld", "Stats", "Shapes", "Counters", "Some"]
