"""Hostile index config files: whatever a file holds, loading it is an IndexConfig or, at once, a short
ConfigError naming the file and the field (issue 12). The DAG file loads every config at import, so
one such file must neither hang nor kill the DAG processor.

The loads that blew up before (an alias bomb, a FIFO) run in a child process with a memory limit
and a timeout, so a regression fails this suite instead of hanging or killing it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_index_config
from pipeline.config_yaml import MAX_CONFIG_BYTES, ConfigLoader, PureLoader, RefusedYaml, parse_yaml
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MAX_MESSAGE = 2048

#: A valid config, as a user writes it; tests append or replace lines.
VALID = """\
name: shop
timezone: Asia/Shanghai
start_date: "2026-11-01"
source:
  oss_conn_id: oss_x
  bucket: my-bucket
  prefixes: [a/, b/]
id_rule:
  kind: filename_digits
category_rule:
  kind: path_segment
  segment: 1
  mapping: {shoes: 1, bags: 2}
warehouse:
  conn_id: mc
  table: image_catalog
"""


def alias_bomb(levels: int = 8, width: int = 10) -> str:
    """``tags`` holding width**levels strings, from a few hundred bytes (the "billion laughs")."""
    lines = [f"a1: &a1 [{', '.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(2, levels + 1)]
    return VALID + "\n".join(lines) + f"\ntags: *a{levels}\n"


def write(tmp_path: Path, text: str | bytes, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    """The ConfigError loading ``path`` raises (nothing else may escape); short and naming the file."""
    with pytest.raises(ConfigError) as err:
        load_index_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message[:300]
    assert len(message) < MAX_MESSAGE, f"{len(message)} characters: {message[:300]}…"
    return message


_CHILD = """
import json, sys
from pipeline.config import load_index_config
try:
    load_index_config(sys.argv[1])
    print(json.dumps({"loaded": True}))
except Exception as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)[:4096], "length": len(str(exc))}))
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def load_isolated(path: Path, timeout: float = 30) -> dict:
    """``load_index_config(path)`` in a child limited to 2 GiB and ``timeout`` s: what it raised."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {path.name} did not finish in {timeout} s")
    assert done.returncode == 0, f"the loading process died ({done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout.splitlines()[-1])


# --- 1. The alias bomb, and short messages whatever the value ---------------------------------------


def test_an_alias_bomb_is_refused_at_once_naming_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, alias_bomb())  # 10**8 strings once expanded

    outcome = load_isolated(path)

    assert outcome["type"] == "ConfigError", outcome
    assert outcome["length"] < MAX_MESSAGE
    assert outcome["message"].startswith(f"{path}: line 17: a1: YAML anchors (&a1) are not allowed"), outcome


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('description: &d "one"\n', "line 17: description: YAML anchors (&d) are not allowed"),
        ("shared: &s x\ndescription: *s\n", "line 17: shared: YAML anchors (&s) are not allowed"),
        ("tags: [*undefined]\n", "line 17: tags[0]: YAML aliases (*undefined) are not allowed"),
    ],
)
def test_anchors_and_aliases_are_refused_even_when_small(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, VALID + text))


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("description: [" + ", ".join(["[x, x, x, x, x, x, x, x]"] * 4000) + "]\n", "description"),
        ("name: " + "A" * 200_000 + "\n", "name"),
        ("owner: [" + ", ".join(str(i) for i in range(20_000)) + "]\n", "owner"),
    ],
)
def test_a_bad_value_is_quoted_as_a_short_excerpt(tmp_path: Path, line: str, field: str) -> None:
    text = VALID.replace("name: shop\n", "") if line.startswith("name:") else VALID
    message = refusal(write(tmp_path, text + line))
    assert f"\n  {field}: " in message


def test_many_bad_values_are_summed_up_not_listed(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, VALID + "tags: [" + ", ".join(["1"] * 20) + "]\n"))
    assert "tags[0]: Input should be a valid string (got 1)" in message
    assert "… and 16 more" in message


# --- 4. Inputs that escaped the error handling ------------------------------------------------------


def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "tags: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert "line 17: tags[0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 12 levels" in refusal(path)


def test_a_file_of_too_many_values_is_refused_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "tags: [" + ", ".join(["t"] * 60_000) + "]\n")
    assert "line 17: tags[49959]: more than 50,000 values in one file" in refusal(path)


def test_an_integer_of_thousands_of_digits_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("segment: 1", "segment: " + "9" * 5000))
    assert "line 12: category_rule.segment: a number of 5000 characters is not a valid int" in refusal(path)


def test_duplicate_keys_are_refused_naming_key_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  bucket: my-bucket\n", "  bucket: my-bucket\n  bucket: other-bucket\n"))
    assert "line 7: source.bucket: duplicate key (lines 6 and 7)" in refusal(path)
    top = write(tmp_path, VALID + "name: shop2\n", "top.yaml")
    assert "line 17: name: duplicate key (lines 1 and 17)" in refusal(top)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("description: !!binary aGVsbG8=\n", "line 17: description: YAML tag !!binary is not allowed"),
        ("tags: !!set {a, b}\n", "line 17: tags: YAML tag !!set is not allowed"),
        ("description: !!timestamp 2026-13-45\n", "line 17: description: YAML tag !!timestamp is not allowed"),
        ("description: !!python/name:os.system x\n", "YAML tag !!python/name:os.system is not allowed"),
        ("retries: !!int abc\n", "line 17: retries: 'abc' is not a valid int"),
        ("tags: [!!bool maybe]\n", "line 17: tags[0]: 'maybe' is not a valid bool"),
        ("? [a, b]\n: 1\n", "line 17: (top level): a key must be a plain string or number, not a list"),
    ],
)
def test_tags_beyond_plain_data_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, VALID + text))


def test_plain_dates_stay_strings_and_impossible_ones_are_refused(tmp_path: Path) -> None:
    plain = write(tmp_path, VALID.replace('start_date: "2026-11-01"', "start_date: 2026-11-01"), "plain.yaml")
    assert load_index_config(plain).start_date == "2026-11-01"
    impossible = write(tmp_path, VALID.replace('start_date: "2026-11-01"', "start_date: 2026-13-45"))
    assert "start_date: start_date '2026-13-45' is not a calendar date" in refusal(impossible)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "# padding\n" * (MAX_CONFIG_BYTES // 10))
    assert f"index config is larger than {MAX_CONFIG_BYTES // 1024} KiB" in refusal(path)


def test_a_fifo_or_a_folder_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    outcome = load_isolated(fifo, timeout=20)  # reading a FIFO with no writer waits forever
    assert outcome["type"] == "ConfigError", outcome
    assert outcome["message"] == f"{fifo}: cannot read index config: not a regular file"
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert refusal(folder) == f"{folder}: cannot read index config: not a regular file"


def test_text_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.encode() + b"description: caf\xe9\n")
    assert refusal(path) == f"{path}: index config is not UTF-8 text (byte {len(VALID) + 16} is not)"


@pytest.mark.parametrize("loader", [ConfigLoader, PureLoader], ids=["libyaml", "pure-python"])
def test_both_parsers_refuse_the_same(loader: type) -> None:
    for text, expected in [
        (alias_bomb(), "line 17: a1: YAML anchors"),
        ("tags: " + "[" * 50_000 + "]" * 50_000, "nested deeper than 12 levels"),
        ("a: 1\nb: 2\na: 3\n", "line 3: a: duplicate key (lines 1 and 3)"),
        ("a: " + "1" * 5000, "a number of 5000 characters"),
    ]:
        with pytest.raises(RefusedYaml, match=expected.replace("(", r"\(").replace(")", r"\)")):
            parse_yaml(text, loader)
    assert parse_yaml("d: 2026-11-01\nn: 0x10\nb: yes\nf: 1.5\n<<: x\n", loader) == {
        "d": "2026-11-01", "n": 16, "b": True, "f": 1.5, "<<": "x"
    }


def test_the_shipped_configs_read_as_plain_yaml_reads_them() -> None:
    for shipped in [REPO / "dags" / "indexes" / "demo.yaml", REPO / "dags" / "indexes" / "products.yaml.example"]:
        assert parse_yaml(shipped.read_text()) == yaml.safe_load(shipped.read_text())
        assert load_index_config(shipped).warehouse.table.endswith("_catalog")


# --- 3. Numbers out of any sane range ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("segment: 1", "segment: -2147483648", "category_rule.segment: Input should be greater than or equal to -1024"),
        ("segment: 1", "segment: 1024", "category_rule.segment: Input should be less than or equal to 1023"),
        ("segment: 1", "segment: 1.0e+20", "category_rule.segment: Input should be a valid integer (got 1e+20)"),
        ("segment: 1", "segment: -1.0e+20", "category_rule.segment: Input should be a valid integer (got -1e+20)"),
        ("{shoes: 1, bags: 2}", "{shoes: 1, bags: 9223372036854775808}",
         "category_rule.mapping.bags: Input should be less than or equal to 9223372036854775807"),
        ("  mapping: {shoes: 1, bags: 2}\n", "  unmapped: default\n  default_id: -1\n",
         "category_rule.default_id: Input should be greater than or equal to 0"),
        ("  prefixes: [a/, b/]\n", "  prefixes: [a/]\n  max_size_bytes: 100000000000000000\n",
         "source.max_size_bytes: Input should be less than or equal to 54975581388800"),
        ("start_date", "retry_delay_minutes: 1.0e+300\nstart_date",
         "retry_delay_minutes: Input should be less than or equal to 1440"),
        ("start_date", "retry_delay_minutes: .inf\nstart_date", "retry_delay_minutes: Input should be a finite number"),
        ("start_date", "retry_delay_minutes: .nan\nstart_date", "retry_delay_minutes: Input should be a finite number"),
        ("start_date", "opensearch: {conn_id: o, table: t, new_generation_timeout_minutes: 1.0e+300}\nstart_date",
         "opensearch.new_generation_timeout_minutes: Input should be less than or equal to 4320"),
        ("start_date", "opensearch: {conn_id: o, table: t, smoke: {text_min_hits: 1000000000}}\nstart_date",
         "opensearch.smoke.text_min_hits: Input should be less than or equal to 100"),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert expected in refusal(write(tmp_path, VALID.replace(old, new, 1)))


@pytest.mark.parametrize("segment", [-1024, -2, 0, 1023])
def test_the_extreme_segments_allowed_run_on_a_page_of_keys(tmp_path: Path, segment: int) -> None:
    from pipeline.oss.catalog import CatalogBuilder, ListedObject

    config = load_index_config(write(tmp_path, VALID.replace("segment: 1", f"segment: {segment}")))
    builder = CatalogBuilder(config.source, config.id_rule, config.category_rule)
    deep = "a/" + "shoes/" * 169 + "7.jpg"  # 1,021 bytes, 171 segments
    batch = builder.rows([ListedObject(f"a/shoes/{i}.jpg", 5) for i in range(200)] + [ListedObject(deep, 5)])
    assert batch.num_rows == {-1024: 0, -2: 201, 0: 0, 1023: 0}[segment]


# --- 4. Types are what they say: no bool for a number, no string for a bool --------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{shoes: 1, bags: 2}", "{shoes: true, bags: 2}",
         "category_rule.mapping.shoes: Input should be a valid integer (got True)"),
        ("  prefixes: [a/, b/]\n", "  prefixes: [a/, b/]\n  min_size_bytes: true\n",
         "source.min_size_bytes: Input should be a valid integer (got True)"),
        ("  prefixes: [a/, b/]\n", '  prefixes: [a/, b/]\n  allow_param_prefixes_outside: "yes"\n',
         "source.allow_param_prefixes_outside: Input should be a valid boolean (got 'yes')"),
        ("segment: 1", "segment: 1e20", "category_rule.segment: Input should be a valid integer (got '1e20')"),
        ("segment: 1", 'segment: "1"', "category_rule.segment: Input should be a valid integer (got '1')"),
        ("start_date", "retries: 2.0\nstart_date", "retries: Input should be a valid integer (got 2.0)"),
        ("start_date", "guards: {max_shrink_fraction: true}\nstart_date",
         "guards.max_shrink_fraction: Input should be a valid number (got True)"),
    ],
)
def test_bools_and_strings_are_not_numbers(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    assert expected in refusal(write(tmp_path, VALID.replace(old, new, 1)))


def test_plain_yaml_forms_still_read(tmp_path: Path) -> None:
    text = VALID.replace("start_date", "retry_delay_minutes: 1\nstart_date") + "guards: {max_shrink_fraction: 0}\n"
    config = load_index_config(write(tmp_path, text.replace("segment: 1", "segment: -0x2")))
    assert (config.retry_delay_minutes, config.guards.max_shrink_fraction, config.category_rule.segment) == (1.0, 0.0, -2)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ('"99 99 99 99 99"', "schedule '99 99 99 99 99' is not a cron expression Airflow accepts: [99 99 99 99 99] is not"),
        ('"*/0 * * * *"', "is not a cron expression Airflow accepts"),
        ('"H 2 * * *"', "is not a cron expression Airflow accepts"),
        ('"0 0 30 2 *"', "schedule '0 0 30 2 *' never fires"),
        ("'@bogus'", "schedule '@bogus' is no preset Airflow knows: use one of @annually, @continuous, @daily"),
        ('"every night"', "schedule 'every night' must be a 5-field cron expression"),
    ],
)
def test_a_schedule_airflow_would_refuse_is_refused(tmp_path: Path, schedule: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, VALID + f"schedule: {schedule}\n"))


@pytest.mark.parametrize(
    "schedule", ["0 2 * * *", "30 1 * * MON-FRI", "0 2 L * *", "0 */6 * * 5#3", "@daily", "@midnight", "@once",
                 "@continuous", None],
)
def test_a_schedule_airflow_accepts_is_accepted(schedule: str | None) -> None:
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

    from pipeline.config import check_schedule

    assert check_schedule(schedule) == schedule
    if schedule not in (None, "@once", "@continuous"):  # those are no cron: Airflow's own timetables
        CronTriggerTimetable(schedule, timezone="UTC").validate()


@pytest.mark.parametrize("expression", ["99 99 99 99 99", "*/0 * * * *", "H 2 * * *", "@bogus", "61 * * * *"])
def test_the_schedules_refused_are_the_ones_airflows_cron_timetable_refuses(expression: str) -> None:
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    from pipeline.config import check_schedule

    with pytest.raises(ValueError):
        check_schedule(expression)
    with pytest.raises(AirflowTimetableInvalid):
        CronTriggerTimetable(expression, timezone="UTC").validate()


@pytest.mark.parametrize(("zone", "expected"), [("Asia", "unknown time zone 'Asia'"), ("x" * 300, "at most 64 characters")])
def test_a_time_zone_that_is_a_folder_or_too_long_is_a_config_error(tmp_path: Path, zone: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, VALID.replace("timezone: Asia/Shanghai", f"timezone: {zone}")))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("tags: [" + ", ".join(f"t{i}" for i in range(21)) + "]\n", "tags: List should have at most 20 items"),
        ("description: " + "d" * 3000 + "\n", "description: String should have at most 2000 characters"),
        ("load_pool: " + "p" * 300 + "\n", "load_pool: String should have at most 256 characters"),
    ],
)
def test_strings_and_lists_have_bounds(tmp_path: Path, line: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, VALID + line))


def test_thousands_of_prefixes_are_refused_before_they_are_compared_pairwise(tmp_path: Path) -> None:
    prefixes = ", ".join(f"p{i}/" for i in range(5000))  # 25,000,000 comparisons before
    path = write(tmp_path, VALID.replace("prefixes: [a/, b/]", f"prefixes: [{prefixes}]"))
    assert "source.prefixes: List should have at most 100 items" in refusal(path)
