import sys

from keras_resunet import provenance


def test_a_scripts_command_is_written_as_a_user_types_it(monkeypatch):
    assert (
        provenance.command_line("export.benchmark", ["--model", "my model.keras"])
        == "python -m export.benchmark --model 'my model.keras'"
    )
    monkeypatch.setattr(sys, "argv", ["/x/experiments/pnp.py", "--quick"])
    assert provenance.command_line() == "python -m experiments.pnp --quick"
    assert provenance.command_line("experiments.pnp") == "python -m experiments.pnp --quick"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/resunet", "denoise", "a.png"])
    assert provenance.command_line() == "resunet denoise a.png"


def test_a_record_names_the_machine_and_the_code():
    fields = provenance.record_fields()
    assert sorted(fields) == sorted(provenance.RECORD_FIELDS)
    assert "cores" in fields["machine"] and "keras" in fields["machine"]
