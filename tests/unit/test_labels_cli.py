"""``lumenal users``: operator bootstrap straight on the database."""

from __future__ import annotations

from lumenal.labels import cli


def test_users_add_list_passwd_deactivate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUMENAL_DB_URL", f"sqlite:///{tmp_path}/labels.db")
    assert cli.main(["add", "alice", "--role", "admin", "--password", "alice-password"]) == 0
    assert cli.main(["add", "bob", "--password", "bob-password", "--display-name", "Bob B"]) == 0
    capsys.readouterr()
    assert cli.main(["add", "bob", "--password", "bob-password"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["add", "eve", "--password", "short"]) == 1          # too short
    assert cli.main(["passwd", "bob", "--password", "bob-new-password"]) == 0
    assert cli.main(["deactivate", "bob"]) == 0
    assert cli.main(["deactivate", "alice"]) == 1                         # last admin
    assert cli.main(["deactivate", "nobody"]) == 1
    capsys.readouterr()
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["alice", "admin", "yes"]
    assert lines[2].split() == ["bob", "annotator", "no", "Bob", "B"]
