"""Plotly's *basic* partial bundle (scatter, bar, pie: every trace the dashboard draws) instead of the
full 4.8 MB ``plotly.min.js`` that Dash loads by default: a first visit then downloads and compiles
about a quarter of the script before the curves appear.

The bundle is the npm package ``plotly.js-basic-dist-min`` at the plotly.js version of the installed
``plotly`` Python package, fetched once by ``scripts/install.sh`` (``python -m dashboards.plotly_bundle``)
from the npm registry, checked against its SHA-256, and kept in ``dashboards/assets/`` (not in git).
Without it the dashboard serves the full bundle, as Dash does.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

BUNDLE = "plotly-basic.min.js"
VERSION = "4.1.1"  # the plotly.js inside plotly==7.1.0 (constraints.txt): see its plotly.min.js header
TARBALL = f"https://registry.npmjs.org/plotly.js-basic-dist-min/-/plotly.js-basic-dist-min-{VERSION}.tgz"
SHA256 = "ea907f854b6cec4f6a2fa71540ec019a21ed2c61e6a109ddd5c072103a96eed0"
ASSETS = Path(__file__).parent / "assets"


def use_partial_bundle(dcc: Any, assets: Path = ASSETS) -> bool:
    """If the basic bundle is in ``assets`` (Dash serves every script there), drop the full plotly.js
    that Dash registered with ``dcc``; ``dcc.Graph`` then uses the ``window.Plotly`` the bundle defines.
    Returns whether the partial bundle is in use."""
    if not (assets / BUNDLE).is_file():
        return False
    dist = dcc._js_dist  # Dash's own list of dcc's scripts; the plotly entry is added by Dash()
    dist[:] = [entry for entry in dist if entry.get("namespace") != "plotly"]
    return True


def fetch(assets: Path = ASSETS) -> Path:
    """Download the bundle into ``assets`` (checked, written atomically); a no-op when present."""
    target = assets / BUNDLE
    if target.is_file():
        return target
    with urllib.request.urlopen(TARBALL, timeout=60) as resp:
        data = resp.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise RuntimeError(f"{TARBALL}: SHA-256 {digest} is not the pinned {SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(f"package/{BUNDLE}")
        if member is None:
            raise RuntimeError(f"{TARBALL}: no package/{BUNDLE} inside")
        script = member.read()
    tmp = target.with_suffix(".part")
    tmp.write_bytes(script)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    try:
        print(f"plotly basic bundle: {fetch()}")
    except (OSError, RuntimeError) as exc:  # the dashboard still works, with the full bundle
        print(f"plotly basic bundle not fetched ({exc}); the dashboard serves the full one", file=sys.stderr)
