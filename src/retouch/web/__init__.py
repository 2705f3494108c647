"""The browser editor: static files (index.html, app.js, api.js, mask.js, style.css) that `retouch serve` serves
at ``/``; no build step.  ``browser`` holds the helpers that drive the page in a headless chromium (the
end-to-end test and the docs' screenshots)."""

from __future__ import annotations

from pathlib import Path

WEB_DIR = Path(__file__).resolve().parent
