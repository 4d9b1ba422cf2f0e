"""Hostile YAML: deep nesting, alias bombs, huge files — one located line, exit 2, little CPU.

Time is measured as CPU time (this machine is shared and noisy, so wall-clock says little), with a
generous budget: before the bounds, 300 nested lists raised RecursionError and the alias bomb below
ran for more than 45 s of CPU without finishing; now each takes a few hundredths of a second.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.spec.bounded_yaml import MAX_DEPTH, MAX_SPEC_BYTES, MAX_VALUES
from moorage.spec.loader import SpecInvalid, load_spec

WriteSpec = Callable[..., Path]
CPU_BUDGET = 1.0  # seconds of CPU for one spec; each case here takes well under a tenth of that
TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
TOO_MANY = f"more than {MAX_VALUES} keys, values and list items (YAML aliases expanded); a spec holds far fewer"


def billion_laughs(levels: int = 9) -> str:
    """Each level is a list of ten aliases to the one before: 10**levels strings once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]" for level in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def problems_within_budget(path: Path) -> list[str]:
    started = time.process_time()
    with pytest.raises(SpecInvalid) as raised:
        load_spec(path)
    used = time.process_time() - started
    assert used < CPU_BUDGET, f"{used:.2f}s of CPU"
    return raised.value.report_lines()


def test_lists_nested_300_deep_are_one_line_where_the_nesting_goes_too_deep(write_spec: WriteSpec, valid_spec_text: str) -> None:
    spec = write_spec(valid_spec_text + "a: " + "[" * 300 + "]" * 300 + "\n")

    assert problems_within_budget(spec) == [f"moorage.yml:23:{4 + MAX_DEPTH}: error: {TOO_DEEP}"]


def test_a_nested_value_inside_the_spec_is_refused_the_same_way(write_spec: WriteSpec, valid_spec_text: str) -> None:
    spec = write_spec(valid_spec_text.replace("replicas: 3", "replicas: " + "{a: " * 300 + "}" * 300))

    [line] = problems_within_budget(spec)
    assert line.startswith("moorage.yml:9:") and line.endswith(TOO_DEEP)


@pytest.mark.parametrize(
    "nesting",
    [
        "".join(" " * depth + f"k{depth}:\n" for depth in range(300)) + " " * 300 + "x\n",  # indented mappings
        "- " * 300 + "x\n",  # block lists on one line
    ],
    ids=["mappings", "lists"],
)
def test_block_nesting_300_deep_is_one_located_line(write_spec: WriteSpec, nesting: str) -> None:
    [line] = problems_within_budget(write_spec(nesting))

    assert line.endswith(f": error: {TOO_DEEP}")


def test_nesting_that_a_spec_uses_is_fine(write_spec: WriteSpec, valid_spec_text: str) -> None:
    deep_but_allowed = "metadata:\n  labels:\n" + "".join(f"    l{index}: v\n" for index in range(3))

    spec = write_spec(valid_spec_text.replace("metadata:\n", deep_but_allowed))

    assert load_spec(spec).model.metadata.labels == {"l0": "v", "l1": "v", "l2": "v"}


def test_the_billion_laughs_is_refused_at_the_first_anchor_past_the_limit(write_spec: WriteSpec, valid_spec_text: str) -> None:
    spec = write_spec(billion_laughs() + valid_spec_text)

    # l3 expands to 11111 values, more than the limit: its line (4), column 5 (the list).
    assert problems_within_budget(spec) == [f"moorage.yml:4:5: error: {TOO_MANY}"]


def test_an_alias_bomb_inside_a_field_is_refused_the_same_way(write_spec: WriteSpec, valid_spec_text: str) -> None:
    bomb = "\n".join("    " + line for line in billion_laughs(5).splitlines())
    spec = write_spec(valid_spec_text.replace("env: {GREETING: hi}", "env: {GREETING: hi}\n  x:\n" + bomb))

    [line] = problems_within_budget(spec)
    assert line.endswith(f": error: {TOO_MANY}")


def test_a_flat_list_of_too_many_values_is_refused_where_it_passes_the_limit(write_spec: WriteSpec, valid_spec_text: str) -> None:
    spec = write_spec(valid_spec_text.replace("secrets: [API_TOKEN]", "secrets: [" + "A, " * MAX_VALUES + "]"))

    [line] = problems_within_budget(spec)
    assert line.startswith("moorage.yml:13:") and line.endswith(f": error: {TOO_MANY}")


def test_aliases_a_spec_uses_still_work(write_spec: WriteSpec, valid_spec_text: str) -> None:
    text = valid_spec_text.replace("  name: hello\n", "  name: hello\n  labels: &shared {GREETING: hi, LEVEL: debug}\n")
    spec = write_spec(text.replace("env: {GREETING: hi}", "env: *shared"))

    assert load_spec(spec).model.spec.env == {"GREETING": "hi", "LEVEL": "debug"}


def test_a_large_real_spec_validates(write_spec: WriteSpec, valid_spec_text: str) -> None:
    env = "env:\n" + "".join(f"    VARIABLE_{index}: value {index}\n" for index in range(1000))

    service = load_spec(write_spec(valid_spec_text.replace("env: {GREETING: hi}", env + "    GREETING: hi"))).model

    assert len(service.spec.env) == 1001


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(write_spec: WriteSpec, valid_spec_text: str) -> None:
    spec = write_spec(valid_spec_text + "#" * MAX_SPEC_BYTES + "\n")

    assert problems_within_budget(spec) == ["moorage.yml:1:1: error: larger than 64 KiB, the most a spec file may hold"]


def test_an_endless_file_is_read_only_as_far_as_the_limit(spec_dir: Path) -> None:
    assert problems_within_budget(Path("/dev/zero")) == ["/dev/zero:1:1: error: larger than 64 KiB, the most a spec file may hold"]


def test_the_installed_command_refuses_the_bomb_with_one_line_and_little_cpu(write_spec: WriteSpec, valid_spec_text: str) -> None:
    write_spec(valid_spec_text, "good.yml")
    write_spec(billion_laughs() + valid_spec_text, "bomb.yml")

    def run(file: str) -> tuple[subprocess.CompletedProcess[str], float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run([sys.executable, "-m", "moorage", "validate", file], capture_output=True, text=True, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return result, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

    good, startup_cpu = run("good.yml")  # most of a run is importing moorage
    bomb, bomb_cpu = run("bomb.yml")

    assert (good.returncode, bomb.returncode, bomb.stdout) == (0, 2, "")
    assert bomb.stderr == f"bomb.yml:4:5: error: {TOO_MANY}\n"
    assert bomb_cpu < startup_cpu + CPU_BUDGET, f"{bomb_cpu:.2f}s of CPU, {startup_cpu:.2f}s to validate a good spec"
