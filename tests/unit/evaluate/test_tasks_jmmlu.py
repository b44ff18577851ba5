"""JMMLU reads headerless CSVs with a UTF-8 byte-order mark, written here as the published files
are (stray spaces around commas, quoted cells), in both directory layouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiban.evaluate.tasks import TaskDataError, get_task
from kiban.evaluate.tasks.jmmlu import JMMLU

ANATOMY = (
    "次のうち、体内で尿を集める構造を最もよく表しているものはどれか？,膀胱 ,腎臓 , 尿管 , 尿道,A\n"
    "肺に空気を通すのはどれか？,大動脈 ,食道 , 気管 , 膵臓,C\n"
    '"次の文の続きを完成させるものはどれか？""右房室弁は...""",半月弁。 ,乳頭筋によって収縮が妨げられる。,'
    " 収縮期に開いている。, 心臓が弛緩するときに肺動脈から血液が戻るのを防ぐ。,B\n"
)
JAPANESE_HISTORY = (
    "鎌倉幕府を開いたのは誰か。,源頼朝,足利尊氏,徳川家康,織田信長,A\n"
    "大化の改新が始まった年はどれか。,645年,710年,794年,1192年,A\n"
)
JAPANESE_IDIOM = "「一石二鳥」の意味として正しいものはどれか。,一度に二つの利益を得る,鳥を捕まえる,石を投げる,無駄が多い,A\n"


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # UTF-8 with BOM, as published
    return path


def test_loads_every_subject_sorted_with_bom_and_spaces_stripped(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/test/japanese_history.csv", JAPANESE_HISTORY)
    write_csv(tmp_path / "JMMLU/test/anatomy.csv", ANATOMY)
    task = JMMLU()
    docs, pool = task.load(tmp_path)
    assert pool == docs  # no dev split: the pool is the test set, drawn from per subject
    assert [d.id for d in docs] == [
        "anatomy/0", "anatomy/1", "anatomy/2", "japanese_history/0", "japanese_history/1",
    ]  # fmt: skip
    first = docs[0].fields
    assert first["question"] == "次のうち、体内で尿を集める構造を最もよく表しているものはどれか？"  # no BOM
    assert first["choices"] == ["膀胱", "腎臓", "尿管", "尿道"]
    assert (first["subject"], first["label"]) == ("anatomy", 0)
    assert docs[2].fields["question"] == '次の文の続きを完成させるものはどれか？"右房室弁は..."'
    assert task.breakdown_field == "subject"
    assert task.data_files == (
        tmp_path / "JMMLU/test/anatomy.csv",
        tmp_path / "JMMLU/test/japanese_history.csv",
    )


def test_prompt_scores_letters_like_lm_eval_mmlu(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/test/anatomy.csv", ANATOMY)
    task = JMMLU()
    docs, pool = task.load(tmp_path)
    assert task.choices(docs[1]) == [" A", " B", " C", " D"]
    assert task.gold(docs[1]) == 2
    assert task.context(docs[1], [docs[0]]) == (
        "以下は多肢選択式の問題（解答付き）です。\n\n"
        "次のうち、体内で尿を集める構造を最もよく表しているものはどれか？\nA. 膀胱\nB. 腎臓\nC. 尿管\nD. 尿道\n答え: A\n\n"
        "肺に空気を通すのはどれか？\nA. 大動脈\nB. 食道\nC. 気管\nD. 膵臓\n答え:"
    )


def test_git_clone_layout_reads_both_licence_folders(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/JMMLU/anatomy.csv", ANATOMY)
    write_csv(tmp_path / "JMMLU/JMMLU_NC_ND/japanese_idiom.csv", JAPANESE_IDIOM)
    docs, _ = JMMLU().load(tmp_path)
    assert sorted({d.fields["subject"] for d in docs}) == ["anatomy", "japanese_idiom"]


def test_test_folder_wins_over_the_clone_layout(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/test/anatomy.csv", ANATOMY)
    write_csv(tmp_path / "JMMLU/JMMLU/japanese_history.csv", JAPANESE_HISTORY)
    docs, _ = JMMLU().load(tmp_path)
    assert {d.fields["subject"] for d in docs} == {"anatomy"}


def test_a_subject_in_both_licence_folders_is_an_error(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/JMMLU/anatomy.csv", ANATOMY)
    write_csv(tmp_path / "JMMLU/JMMLU_NC_ND/anatomy.csv", ANATOMY)
    with pytest.raises(TaskDataError, match="subject 'anatomy' appears twice"):
        JMMLU().load(tmp_path)


def test_fewshot_comes_from_the_same_subject_never_the_doc(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/test/anatomy.csv", ANATOMY)
    write_csv(tmp_path / "JMMLU/test/japanese_history.csv", JAPANESE_HISTORY)
    task = JMMLU()
    docs, pool = task.load(tmp_path)
    for doc in docs:
        for seed in range(10):
            shots = task.fewshot(doc, pool, 5, seed=seed)
            assert all(s.fields["subject"] == doc.fields["subject"] for s in shots)
            assert doc.id not in {s.id for s in shots}
            same_subject = sum(d.fields["subject"] == doc.fields["subject"] for d in docs)
            assert len(shots) == same_subject - 1  # asked for 5, the subject has fewer
    assert task.fewshot(docs[0], pool, 2, seed=3) == task.fewshot(docs[0], pool, 2, seed=3)


def test_missing_files_name_the_expected_layout_and_url(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError) as excinfo:
        JMMLU().load(tmp_path)
    message = str(excinfo.value)
    assert str(tmp_path / "JMMLU" / "test" / "<subject>.csv") in message
    assert str(tmp_path / "JMMLU" / "JMMLU_NC_ND") in message
    assert "https://github.com/nlp-waseda/JMMLU" in message


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("問題,a,b,c,d,E", "answer should be one of A, B, C, D, got 'E'"),
        ("問題,a,b,c,A", "expected 6 columns .* got 5"),
        ("問題,a,b,c,d,A,余分", "expected 6 columns .* got 7"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write_csv(tmp_path / "JMMLU/test/anatomy.csv", ANATOMY + "\n" + row + "\n")
    # ANATOMY is 3 lines; line 4 is blank and skipped; the bad row is line 5
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}:5: {message}"):
        JMMLU().load(tmp_path)


def test_trailing_empty_columns_are_tolerated(tmp_path: Path) -> None:
    write_csv(tmp_path / "JMMLU/test/anatomy.csv", "問題,a,b,c,d,B,,\n")
    docs, _ = JMMLU().load(tmp_path)
    assert docs[0].fields["label"] == 1


def test_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "JMMLU/test/anatomy.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes("問題,a,b,c,d,A\n".encode("cp932"))
    with pytest.raises(TaskDataError, match=rf"{re.escape(str(path))}: not UTF-8"):
        JMMLU().load(tmp_path)


def test_template_hash_is_pinned_and_follows_the_template() -> None:
    # Pinned: a change here means the prompt changed — bump JMMLU.version on purpose.
    assert (
        get_task("jmmlu").template_sha256()
        == "7110d4d38573c2a142c452f4d74a0db81cd3919f170b3b27bd14dc6bb89b23f1"
    )
    changed = JMMLU()
    changed.template = changed.template.replace("答え:", "回答:")
    assert changed.template_sha256() != JMMLU().template_sha256()
