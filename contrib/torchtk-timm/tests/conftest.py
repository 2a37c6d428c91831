import pytest

pytest.importorskip("torchtk_timm", reason="torchtk-timm is not installed (make install installs contrib/*)")
