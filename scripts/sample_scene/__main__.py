"""``python -m sample_scene`` (from scripts/): the same command line as scripts/make_sample_scene.py."""

import sys

from .cli import main

sys.exit(main())
