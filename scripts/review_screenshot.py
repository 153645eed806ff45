"""The README's picture of the review page: `polingo review` on a catalog that
translate-po filled, opened in headless Chromium (Selenium, as tests/test_review.py
drives it), sorted lowest confidence first, saved as a PNG.

    translate-po CATALOG.po        # fill it first (a copy: review writes decisions into it)
    .venv/bin/python scripts/review_screenshot.py CATALOG.po docs/review-page.png

Needs chromium and chromedriver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from testkit import browser_binaries, free_port


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"polingo review exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"polingo review did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalog", type=Path, help="a .po file translate-po filled")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--scroll", type=int, default=0, help="pixels to scroll down first")
    args = parser.parse_args()
    if not args.catalog.is_file():
        parser.error(f"{args.catalog}: no such file")
    found = browser_binaries()
    if found is None:
        parser.error("needs chromium and chromedriver on PATH")
    chromium, driver_path = found

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    work = Path(tempfile.mkdtemp(prefix="polingo-shot-"))
    # a copy (the page is only looked at, but never risk the file), named as in the docs
    # tree: the page's title is the path review was given, relative to its folder
    name = Path(args.catalog.resolve().parent.name) / args.catalog.name
    (work / name).parent.mkdir(parents=True)
    shutil.copyfile(args.catalog, work / name)
    port = free_port()
    repo = Path(__file__).resolve().parents[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "review", str(name), "--port", str(port),
         "--review-log", str(work / "review-log.jsonl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/", server)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--disable-gpu"):  # fmt: skip
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            browser.get(url + "/files/0?sort=confidence")
            time.sleep(1)
            browser.execute_script(f"window.scrollTo(0, {args.scroll})")
            time.sleep(0.5)
            browser.save_screenshot(str(args.out))
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
