"""The one line a failed Ansible task leaves in moorage's output names why it failed."""

from __future__ import annotations

from moorage.runner import NO_MESSAGE, failure_message


def test_a_command_that_wrote_only_to_stdout_is_named_by_its_last_stdout_lines() -> None:
    # ansible.builtin.command's result when a host agent (which logs to stdout) exits 1
    res = {
        "msg": "non-zero return code",
        "rc": 1,
        "stdout": "INFO starting\nINFO asked consul\nERROR consul unreachable (403 ACL not found); the live config is unchanged\n",
        "stderr": "",
    }
    assert failure_message(res) == (
        "non-zero return code: INFO starting INFO asked consul ERROR consul unreachable (403 ACL not found); the live config is unchanged"
    )


def test_stderr_wins_over_stdout_and_only_the_last_stdout_lines_are_kept() -> None:
    assert failure_message({"msg": "non-zero return code", "stdout": "noise", "stderr": "boom\n"}) == "non-zero return code: boom"
    long_stdout = "\n".join(f"line {number}" for number in range(50))
    assert failure_message({"msg": "failed", "stdout": long_stdout}) == "failed: line 47 line 48 line 49"


def test_a_failed_loop_item_and_a_result_without_words() -> None:
    res = {"results": [{"failed": False, "msg": "fine"}, {"failed": True, "msg": "item broke", "stdout": "why"}]}
    assert failure_message(res) == "item broke: why"
    assert failure_message({}) == NO_MESSAGE
