import pytest

pytest.importorskip("torchtk_smp", reason="torchtk-smp is not installed (make install installs contrib/*)")
