"""Screenshots of the dashboard for docs/ and the README: a server with traffic in a temporary store, Debian's
headless chromium (`apt-get install chromium`; the Python package `playwright`, its API only).

    .venv/bin/python tools/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nextbest.testing import FakeClock, chromium_page, running_server, send_traffic, wait_for

ROUNDS = 12

SHOTS = (
    ("dashboard-overview.png", "/", "#loops tbody tr"),
    ("dashboard-loop.png", "/loops/onboarding", "#reward-chart circle.point"),
    ("dashboard-decision.png", "/loops/onboarding/decisions/onboarding-0-7", "#decision-facts"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs", help="the folder to write the PNG files to (default: docs)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = FakeClock(time.time() - ROUNDS * 60)  # a round of traffic a minute, ending now
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(Path(tmp) / "store", http_port=0, clock=clock) as (server, client),
    ):
        client.create_loop(
            "onboarding",
            reward_wait_seconds=30,
            publish_interval_seconds=1,
            holdout_fraction=0.1,
            shadow_policies=["vw:--cb_explore_adf --epsilon 0.2"],
        )
        client.create_loop("winback", reward_wait_seconds=30, publish_interval_seconds=1)
        for seed in range(ROUNDS):
            send_traffic(client, "onboarding", 60, seed=seed)
            send_traffic(client, "winback", 20, seed=seed)
            clock.advance(60)
            wait_for(lambda joined=60 * (seed + 1): client.stats("onboarding").joined >= joined, timeout=60)
        with chromium_page(f"http://127.0.0.1:{server.http_port}") as page:
            for name, path, ready in SHOTS:
                page.goto(path)
                page.wait_for_selector(ready)
                time.sleep(0.3)  # let the charts of the first refresh settle
                page.screenshot(path=str(out / name), full_page=False)
                print(out / name)


if __name__ == "__main__":
    main()
