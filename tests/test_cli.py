import pytest

from keras_resunet.cli import main


def test_download_into_existing_folder_fails_cleanly(tmp_path, capsys):
    (tmp_path / "BSDS300").mkdir()
    assert main(["download-bsds300", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "error" in error and "already exists" in error and len(error.splitlines()) == 1


def test_unknown_subcommand_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code != 0


@pytest.mark.slow
def test_demo_restores_sample_photographs(tmp_path, capsys):
    assert main(["demo", "--steps", "150", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "astronaut" in out and (tmp_path / "astronaut.png").is_file()
