import pytest

from mnist_opt import devices
from mnist_opt.devices import KB, Device
from mnist_opt.errors import InputError


def board(tmp_path, text: str) -> str:
    path = tmp_path / "board.toml"
    path.write_text(text)
    return str(path)


FULL = """
name = "my-board"
description = "a Cortex-M33 at 100 MHz"
flash_kb = 512
ram_kb = 128
clock_mhz = 100
model_flash_share = 0.25
model_ram_share = 0.5
max_latency_ms = 50
kernels = "CMSIS-NN"
cycles_per_mac = { reference = 100, optimized = 4 }
"""


def test_every_builtin_loads_and_has_limits():
    assert set(devices.names()) >= {"cortex-m0plus", "cortex-m4f", "esp32-s3"}
    for name in devices.names():
        d = devices.load(name)
        assert d.name == name and d.description
        limits = d.limits()
        assert set(limits) == {"max_kb", "max_arena_kb", "max_macs"}
        assert 0 < limits["max_kb"] <= d.flash_kb and 0 < limits["max_arena_kb"] <= d.ram_kb
        assert isinstance(limits["max_macs"], int) and limits["max_macs"] > 0
        assert d.cycles_per_mac["reference"] > d.cycles_per_mac["optimized"] > 0


@pytest.mark.parametrize("name, flash_kb, ram_kb", [("cortex-m0plus", 32, 8), ("cortex-m4f", 256, 64)])
def test_the_required_cortex_m_parts_have_the_sizes_asked_for(name, flash_kb, ram_kb):
    d = devices.load(name)
    assert (d.flash_kb, d.ram_kb) == (flash_kb, ram_kb)
    assert d.kernels == "CMSIS-NN"


def test_the_esp32_s3_profile_uses_esp_nn():
    d = devices.load("esp32-s3")
    assert d.ram_kb == 512 and d.clock_mhz == 240 and d.kernels == "ESP-NN"


def test_limits_are_the_model_shares_and_the_macs_in_the_latency_budget():
    d = devices.load("cortex-m4f")
    limits = d.limits()
    assert limits["max_kb"] == d.flash_kb * d.model_flash_share
    assert limits["max_arena_kb"] == d.ram_kb * d.model_ram_share
    assert d.latency_ms(limits["max_macs"]) <= d.max_latency_ms < d.latency_ms(limits["max_macs"] + 1)


def test_a_user_file_that_extends_a_builtin_changes_one_key_and_keeps_the_rest(tmp_path):
    base = devices.load("cortex-m4f")
    d = devices.load(board(tmp_path, 'extends = "cortex-m4f"\nclock_mhz = 168\n'))
    assert d.clock_mhz == 168 and d.name == "board"
    assert (d.flash_kb, d.ram_kb, d.cycles_per_mac, d.kernels) == (base.flash_kb, base.ram_kb, base.cycles_per_mac,
                                                                   base.kernels)
    half = devices.load(board(tmp_path, 'extends = "cortex-m4f"\ncycles_per_mac = { optimized = 3 }\n'))
    assert half.cycles_per_mac == {"reference": base.cycles_per_mac["reference"], "optimized": 3.0}


def test_a_user_file_without_extends_describes_a_whole_board(tmp_path):
    d = devices.load(board(tmp_path, FULL))
    assert d.name == "my-board" and d.limits() == {"max_kb": 128.0, "max_arena_kb": 64.0, "max_macs": 1_250_000}


def test_a_user_file_without_extends_missing_a_key_is_refused_naming_it(tmp_path):
    path = board(tmp_path, FULL.replace("ram_kb = 128\n", ""))
    with pytest.raises(InputError, match=r"board\.toml: ram_kb is missing"):
        devices.load(path)


@pytest.mark.parametrize("line, message", [
    ('flash_kb = "512"', r"flash_kb: expected a positive number, got '512'"),
    ("clock_mhz = 0", r"clock_mhz: expected a positive number, got 0"),
    ("max_latency_ms = inf", r"max_latency_ms: expected a positive number, got inf"),
    ("model_ram_share = 1.5", r"model_ram_share: expected a fraction in \(0, 1\].*got 1.5"),
    ("model_flash_share = 0", r"model_flash_share: expected a fraction in \(0, 1\].*got 0"),
    ("cycles_per_mac = { reference = 100 }", r"cycles_per_mac: expected \{ reference ="),
    ("cycles_per_mac = { reference = 100, optimized = -1 }", r"cycles_per_mac: expected"),
    ("kernels = 3", r"kernels: expected a non-empty string, got 3"),
])
def test_a_wrong_type_or_range_is_refused_naming_the_key_and_value(tmp_path, line, message):
    key = line.split(" = ")[0]
    text = "\n".join(line if row.startswith(f"{key} =") else row for row in FULL.splitlines())
    with pytest.raises(InputError, match=message):
        devices.load(board(tmp_path, text))


def test_an_unknown_key_is_refused_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"unknown key\(s\) flash_mb"):
        devices.load(board(tmp_path, 'extends = "cortex-m4f"\nflash_mb = 1\n'))


def test_extending_an_unknown_profile_is_refused_listing_the_builtins(tmp_path):
    with pytest.raises(InputError, match=r"extends: expected one of cortex-m0plus, .*got 'cortex-m99'"):
        devices.load(board(tmp_path, 'extends = "cortex-m99"\n'))


def test_an_unknown_name_is_refused_listing_the_builtins_and_the_file_form():
    with pytest.raises(InputError) as caught:
        devices.load("cortex-m99")
    message = str(caught.value)
    assert "'cortex-m99'" in message and ".toml" in message
    assert all(name in message for name in devices.names())


def test_a_file_that_is_not_toml_is_refused_with_the_parser_message(tmp_path):
    with pytest.raises(InputError, match=r"board\.toml: not valid TOML \(.*line 1"):
        devices.load(board(tmp_path, "flash_kb = = 3\n"))


def test_latency_is_macs_times_cycles_over_the_clock(tmp_path):
    d = devices.load(board(tmp_path, FULL))  # 100 MHz; 100 and 4 cycles a MAC
    assert d.latency_ms(1_000_000) == pytest.approx(40.0)
    assert d.latency_ms(1_000_000, "reference") == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="kernels"):
        d.latency_ms(1, "cmsis")


def test_fit_gives_the_margins_of_a_file_that_fits(tmp_path):
    d = devices.load(board(tmp_path, FULL))  # 128 KB flash, 64 KB arena, 1,250,000 MACs for the model
    fit = d.fit(100 * KB, 60 * KB, 1_000_000)
    assert fit["fits"] is True
    assert (fit["flash_limit_bytes"], fit["flash_margin_bytes"]) == (128 * KB, 28 * KB)
    assert (fit["arena_limit_bytes"], fit["arena_margin_bytes"]) == (64 * KB, 4 * KB)
    assert (fit["max_macs"], fit["macs_margin"]) == (1_250_000, 250_000)
    assert fit["latency_ms"] == {"reference": pytest.approx(1000.0), "optimized": pytest.approx(40.0)}


def test_fit_says_by_how_much_a_file_is_over(tmp_path):
    d = devices.load(board(tmp_path, FULL))
    over_flash = d.fit(130 * KB, 60 * KB, 1_000_000)
    assert over_flash["fits"] is False and over_flash["flash_margin_bytes"] == -2 * KB
    over_arena = d.fit(100 * KB, 65 * KB, 1_000_000)
    assert over_arena["fits"] is False and over_arena["arena_margin_bytes"] == -KB
    over_macs = d.fit(100 * KB, 60 * KB, 1_250_001)
    assert over_macs["fits"] is False and over_macs["macs_margin"] == -1
    unmeasured = d.fit(100 * KB, None, 1_000_000)  # TFLite Micro could not run it: no arena, no fit
    assert unmeasured["fits"] is False and unmeasured["arena_margin_bytes"] is None


def test_to_dict_and_from_dict_round_trip():
    for name in devices.names():
        d = devices.load(name)
        assert Device.from_dict(d.to_dict()) == d
    with pytest.raises(InputError, match="recorded device profile: clock_mhz"):
        Device.from_dict({**devices.load("esp32-s3").to_dict(), "clock_mhz": -1})


def test_the_builtins_file_is_packaged():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "assets/devices.toml" in project["tool"]["setuptools"]["package-data"]["mnist_opt"]
