"""`facelock enroll` embeds with the lock's configured embedder, so an opt-in research model's users match.

Needs the research-only w600k_mbf from ../shared/models-src (never committed); skips where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_root

SOURCE = Path("models-src/insightface-research-only/w600k_mbf/w600k_mbf_dynamic.tflite")


def test_enroll_uses_the_configured_research_embedder_and_the_lock_loads_the_users(cli, faces, tmp_path):
    src = shared_root() / SOURCE
    if not src.is_file():
        pytest.skip(f"needs the research-only w600k_mbf at {src} (never committed; absent in a fresh clone)")
    from firmware.config import load_config
    from firmware.site import open_site

    cli("ca", "init", ok=True)
    cli("device", "init", "--id", "front-door", ok=True)
    cli("models", "install-research", src, "--accept-licence", ok=True)
    conf = tmp_path / "facelock.toml"
    conf.write_text(f'[device]\ndata_dir = "{cli.data_dir}"\n\n[vision]\nembedder = "w600k_mbf"\n')
    r = cli("enroll", "ada", "--images", faces.a_dir, "--config", conf, ok=True)
    uid = r.stdout.strip()
    site = open_site(load_config(conf), data_dir=cli.data_dir)
    users = site.users()
    try:
        enrolled = users.load()
        assert enrolled.gallery.dim == 512 and enrolled.gallery.user_ids == [uid]
    finally:
        users.close()
    # and with the default embedder configured again, those 512-d templates are refused, asking to re-enrol
    from firmware.site import ComponentUnavailableError

    default = open_site(None, data_dir=cli.data_dir)
    users = default.users()
    try:
        with pytest.raises(ComponentUnavailableError, match="re-enrol"):
            users.load()
    finally:
        users.close()
