from __future__ import annotations

import pytest

from settings import LaneFault, Settings, SettingsError, parse_faults


def test_defaults_serve_a_single_machine() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0" and settings.port == 8000
    assert str(settings.audit_path) == "var/audit/audit.log" and settings.sync_threshold_ms == 1000
    assert settings.qpu_provider == "emulated" and settings.fault("qpu") == LaneFault()


def test_faults_parse_per_lane() -> None:
    faults = parse_faults("qpu.fail_rate=1.0, sim.delay_ms=3000,qpu.delay_ms=5")
    assert faults == {"qpu": LaneFault(1.0, 5), "sim": LaneFault(0.0, 3000)}


@pytest.mark.parametrize("env", [{"QGATE_FAULTS": "gpu.fail_rate=1"}, {"QGATE_FAULTS": "qpu.fail_rate=2"},
                                 {"QGATE_FAULTS": "qpu.delay_ms=soon"}, {"PORT": "http"},
                                 {"QGATE_SYNC_THRESHOLD_MS": "-1"}, {"QGATE_QPU_PROVIDER": "dwave"},
                                 {"QGATE_TRUSTED_JWKS_URL": "https://idp.example/jwks.json"}])
def test_bad_settings_name_themselves(env: dict) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)
