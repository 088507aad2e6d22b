"""The test suite. No test reaches a model hub (CI has none): offline is set here, before anything
imports huggingface_hub (which reads it once), and every service the tests start inherits it. The
Hub path is tested on models planted in a Hugging Face cache layout (tests/hub.py)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
