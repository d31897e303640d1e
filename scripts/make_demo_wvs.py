"""Write the demo WVS microdata and its known polarity (resources/demo/wvs/).

Run from the repository root: .venv/bin/python scripts/make_demo_wvs.py [--seed 2025]
The files are committed; rerunning with the same seed rewrites the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyculture.io import write_outputs
from polyculture.wvs.demo import demo_truth, make_demo_microdata
from polyculture.wvs.topics import load_topics

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--respondents", type=int, default=200, help="respondents per country")
    parser.add_argument("--out", type=Path, default=ROOT / "resources/demo/wvs")
    args = parser.parse_args()
    topics = list(load_topics(ROOT / "resources/wvs/topics.yaml").values())
    micro, latent = make_demo_microdata(
        topics, seed=args.seed, respondents_per_country=args.respondents
    )
    with write_outputs() as out:
        micro.write_csv(out.file(args.out / "microdata.csv"))
        demo_truth(latent).write_csv(out.file(args.out / "polarity_truth.csv"), float_precision=17)
    print(f"wrote {micro.height} respondents × {len(topics)} topics to {args.out}")


if __name__ == "__main__":
    main()
