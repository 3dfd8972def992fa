"""Digits drawn on the serve page as people draw them, with pointer strokes in headless Chromium,
and the page's reading of them.

    python -m benchmarks.drawn_digits --checkpoint runs/RUN/best.pt [--count 300] [--hard] [--seed 1]

Every digit comes in the styles people write it in (1 with and without a flag or a base, open and
closed 4, 7 with and without a crossbar, 9 with a straight or a curved tail, ...). Each drawing is
one style's strokes at a random size and position, rotated and slanted at random, with a random
pen width (the pen's pressure), and each stroke's points shaken a little; --hard widens every
range (rotation to +-25 degrees, more slant, thinner and thicker pens, shakier strokes). The
strokes go to the page's canvas as pen pointer events (pointerdown, pointermove, pointerup)
through WebDriver, and the page's answer is read from the page, as a person would read it.

Prints the accuracy over the drawings, per digit and per style, and the confusions. Needs
Debian's chromium and chromium-driver and the test extra (selenium), and the serve extra.
tests/test_serve.py draws a few dozen of these in CI and asserts a floor well below the accuracy
measured here."""

import argparse
import math
import os
import sys
import threading
import time
from collections import Counter
from typing import Dict, List, Sequence, Tuple

import numpy as np

Point = Tuple[float, float]


def _arc(cx, cy, rx, ry, start_deg, end_deg, n=14) -> List[Point]:
    """Points of an elliptic arc; angles in degrees, 0 = right, 90 = down (screen coordinates)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start_deg, end_deg, n)
    ]


# Strokes of each digit in each style, in a box x in [-0.6, 0.6] (left to right), y in [-1, 1]
# (top to bottom); each stroke a list of points drawn in order.
STYLES: Dict[str, Dict[str, List[List[Point]]]] = {
    "0": {
        "oval": [_arc(0, 0, 0.55, 0.95, -90, 270, 28)],
        "slanted oval": [_arc(0.05, 0, 0.5, 0.95, -100, 265, 28)],
    },
    "1": {
        "bar": [[(0.0, -0.95), (0.0, 0.95)]],
        "flag": [[(-0.3, -0.6), (0.05, -0.95), (0.05, 0.95)]],
        "flag and base": [[(-0.3, -0.6), (0.05, -0.95), (0.05, 0.95)], [(-0.3, 0.95), (0.4, 0.95)]],
    },
    "2": {
        "curve": [_arc(0, -0.45, 0.5, 0.5, 200, 360, 10) + [(0.45, -0.3), (-0.55, 0.95), (0.6, 0.95)]],
        "loop base": [_arc(0, -0.45, 0.5, 0.5, 200, 370, 10) + [(-0.45, 0.8), (-0.5, 0.95), (-0.3, 0.8), (0.6, 0.92)]],
    },
    "3": {
        "two bumps": [_arc(0, -0.48, 0.5, 0.47, 210, 450, 14) + _arc(0, 0.48, 0.55, 0.47, 270, 510, 14)],
        "flat top": [[(-0.5, -0.95), (0.5, -0.95), (0.0, -0.15)] + _arc(0.0, 0.42, 0.55, 0.55, 280, 500, 14)],
    },
    "4": {
        "open": [[(-0.2, -0.95), (-0.55, 0.25), (0.6, 0.25)], [(0.3, -0.6), (0.3, 0.95)]],
        "closed": [[(0.3, 0.95), (0.3, -0.95), (-0.55, 0.25), (0.6, 0.25)]],
    },
    "5": {
        "two strokes": [
            [(-0.4, -0.95), (-0.45, -0.1)] + _arc(0.0, 0.4, 0.55, 0.55, 220, 500, 14),
            [(-0.4, -0.95), (0.5, -0.95)],
        ],
        "one stroke": [[(0.5, -0.95), (-0.4, -0.95), (-0.45, -0.1)] + _arc(0.0, 0.4, 0.55, 0.55, 220, 500, 14)],
    },
    "6": {
        "loop": [[(0.4, -0.95), (-0.2, -0.4)] + _arc(0.0, 0.45, 0.5, 0.5, 200, 560, 20)],
        "curved": [_arc(0.3, -0.1, 0.8, 0.9, 250, 180, 8) + _arc(0.0, 0.45, 0.5, 0.5, 180, 540, 18)],
    },
    "7": {
        "plain": [[(-0.55, -0.95), (0.55, -0.95), (-0.1, 0.95)]],
        "crossbar": [[(-0.55, -0.95), (0.55, -0.95), (-0.1, 0.95)], [(-0.25, 0.0), (0.4, 0.0)]],
        "hooked": [[(-0.55, -0.75), (-0.5, -0.95), (0.55, -0.95), (-0.1, 0.95)]],
    },
    "8": {
        "figure": [
            _arc(0, -0.5, 0.42, 0.45, 0, -360, 16)[:9]
            + [(0.45, 0.2), (0.0, 0.95), (-0.5, 0.5), (0.0, 0.0), (0.4, -0.5), (0.0, -0.95)]
        ],
        "two loops": [_arc(0, -0.5, 0.42, 0.45, 90, 450, 18), _arc(0, 0.48, 0.55, 0.47, -90, 270, 20)],
    },
    "9": {
        "straight tail": [_arc(0, -0.45, 0.5, 0.48, 0, 360, 20) + [(0.5, -0.45), (0.5, 0.95)]],
        "curved tail": [_arc(0, -0.45, 0.5, 0.48, 0, 360, 20) + [(0.5, -0.2), (0.35, 0.6), (-0.2, 0.95)]],
    },
}


def drawing(digit: str, style: str, rng: np.random.Generator, hard: bool = False, pad_px: float = 280):
    """(strokes, pressure): a style's strokes as points in the pad's CSS pixels, transformed at random
    (size, position, rotation, slant, shake), and the pen's pressure (its width)."""
    rot = math.radians(rng.uniform(-25, 25) if hard else rng.uniform(-10, 10))
    slant = rng.uniform(-0.3, 0.3) if hard else rng.uniform(-0.15, 0.15)
    height = pad_px * (rng.uniform(0.45, 0.85) if hard else rng.uniform(0.55, 0.8)) / 2
    squeeze = rng.uniform(0.8, 1.25) if hard else rng.uniform(0.9, 1.1)
    cx = pad_px / 2 + rng.uniform(-0.12, 0.12) * pad_px
    cy = pad_px / 2 + rng.uniform(-0.12, 0.12) * pad_px
    shake = (0.05 if hard else 0.015) * height
    cos, sin = math.cos(rot), math.sin(rot)
    strokes = []
    for stroke in STYLES[digit][style]:
        dense = []
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):  # at most 0.15 units between points
            steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / 0.15))
            dense += [(x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps) for t in range(steps)]
        dense.append(stroke[-1])
        points = []
        for x, y in dense:
            x = (x * squeeze + slant * -y) * height
            y = y * height
            x, y = x * cos - y * sin, x * sin + y * cos
            px, py = cx + x + rng.normal(0, shake), cy + y + rng.normal(0, shake)
            points.append((min(max(px, 3.0), pad_px - 3.0), min(max(py, 3.0), pad_px - 3.0)))  # inside the box
        strokes.append(points)
    pressure = rng.uniform(0.1, 0.9) if hard else rng.uniform(0.25, 0.75)
    return strokes, pressure


def cases(count: int, seed: int, hard: bool):
    """count (digit, style, strokes, pressure), every digit and style in turn."""
    rng = np.random.default_rng(seed)
    styles = [(d, s) for d in sorted(STYLES) for s in STYLES[d]]
    for i in range(count):
        digit, style = styles[i % len(styles)]
        strokes, pressure = drawing(digit, style, rng, hard)
        yield digit, style, strokes, pressure


def draw(driver, pad, strokes: Sequence[Sequence[Point]], pressure: float) -> None:
    """The strokes on the pad as pen pointer events (offsets from the pad's centre, CSS pixels)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    width, height = pad.size["width"], pad.size["height"]
    for stroke in strokes:
        builder = ActionBuilder(driver, mouse=PointerInput("pen", "pen"), duration=5)
        pen = builder.pointer_action
        x, y = stroke[0]
        pen.move_to(pad, int(x - width / 2), int(y - height / 2))
        pen.pointer_down(pressure=pressure)
        for x, y in stroke[1:]:
            pen.move_to(pad, int(x - width / 2), int(y - height / 2), pressure=pressure)
        pen.pointer_up()
        builder.perform()


def read(driver, before: int, timeout: float = 60.0) -> str:
    """The digit the page shows once the answer to its last request has come: a request was sent
    after `before` (the page's request count when the drawing began), none is pending (no timer),
    and the newest answer is shown."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if driver.execute_script("return sent > arguments[0] && timer === null && shown === sent", before):
            return driver.execute_script("return document.getElementById('digit').dataset.digit || ''")
        time.sleep(0.02)
    raise TimeoutError("the page did not answer the drawing")


def run_drawings(url: str, drawings, log=print) -> List[Tuple[str, str, str]]:
    """(digit, style, read) for each drawing, drawn on the page at url in a fresh headless Chromium."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from browser import browser
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    out = []
    try:
        driver.get(url + "/")
        WebDriverWait(driver, 30).until(lambda d: "epoch" in d.find_element(By.ID, "model").text)
        pad = driver.find_element(By.ID, "pad")
        for digit, style, strokes, pressure in drawings:
            driver.find_element(By.ID, "clear").click()  # drops the answers to earlier drawings
            before = driver.execute_script("return sent")
            draw(driver, pad, strokes, pressure)
            out.append((digit, style, read(driver, before)))
    finally:
        driver.quit()
    return out


def summary(results: List[Tuple[str, str, str]]) -> str:
    right = sum(d == r for d, _, r in results)
    lines = [f"{len(results)} drawings: {right} read right, accuracy {100 * right / max(1, len(results)):.1f}%"]
    for digit in sorted({d for d, _, _ in results}):
        mine = [(s, r) for d, s, r in results if d == digit]
        styles = ", ".join(
            f"{style} {sum(r == digit for s, r in mine if s == style)}/{sum(s == style for s, _ in mine)}"
            for style in dict.fromkeys(s for s, _ in mine)
        )
        lines.append(f"  {digit}: {100 * sum(r == digit for _, r in mine) / len(mine):5.1f}%  ({styles})")
    wrong = Counter(f"{d}->{r or '?'}" for d, _, r in results if d != r)
    lines.append("  confusions: " + (", ".join(f"{k} x{v}" for k, v in wrong.most_common(8)) or "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.drawn_digits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="the model to serve (a best.pt)")
    parser.add_argument("--count", type=int, default=300, help="drawings (default: 300)")
    parser.add_argument("--hard", action="store_true", help="wider ranges of rotation, slant, pen width and shake")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the drawings (default: 1)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    from lenet_ext import serve

    server = serve.start(args.checkpoint, "127.0.0.1", 0)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        start = time.perf_counter()
        results = run_drawings(f"http://127.0.0.1:{server.address[1]}", cases(args.count, args.seed, args.hard))
        print(f"{'hard' if args.hard else 'neat'} drawings, seed {args.seed}, {args.checkpoint}")
        print(summary(results))
        print(f"({time.perf_counter() - start:.0f} s)")
    finally:
        server.stop()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
