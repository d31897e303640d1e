"""`python -m polyculture.train --job job.json`: one process of a training job."""

from polyculture.train.run import main

if __name__ == "__main__":
    raise SystemExit(main())
