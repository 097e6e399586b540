"""refimpl.errata: every erratum written in the code is found, and none is written in a form it would miss."""
import re
from pathlib import Path

import pytest

from refimpl import errata

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("margin", "preference", "kernel", "adacon")


def test_every_paper_loss_has_its_errata_of_the_paper_and_of_the_authors_code():
    found = errata.collect()
    for name in LOSSES:
        mine = [e for e in found if e.obj.startswith(f"refimpl.losses.{name}")]
        assert {e.source for e in mine} == {"paper", "code"}, name
    assert all(e.text and e.where for e in found)


def test_no_erratum_is_written_in_a_form_the_index_would_miss():
    """A line of the package's source that opens a paragraph with 'Erratum'/'Errata' must be a marker.

    Free prose ('errata fixed', 'see there for the errata') is fine; a paragraph that *states* an
    erratum starts with the marker, so that the errata index lists it.
    """
    marker = re.compile(r"^\s*(?:[*-] )?Errat(?:um|a)\b")
    wrong = []
    for path in sorted((ROOT / "refimpl").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if marker.match(line) and not errata.MARKER.match(line.strip()):
                wrong.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:70]}")
    assert wrong == []


def test_collect_reads_the_marked_paragraphs_and_list_items():
    doc = """Summary.

    Erratum (WSP Eq. 3-4): the denominator
    runs over j != t.

    * Erratum (AdaCon code, ``rnet2dp1.py``): a list item,
      on two lines.
    * not an erratum.

    Errata fixed above; this paragraph is prose.
    """
    found = errata.from_docstring(doc, "pkg.fn")
    assert found == [errata.Erratum("WSP", "paper", "Eq. 3-4", "the denominator runs over j != t.", "pkg.fn"),
                     errata.Erratum("AdaCon", "code", "``rnet2dp1.py``", "a list item, on two lines.", "pkg.fn")]


@pytest.mark.parametrize("bad", ["Erratum: Eq. 2 is wrong.", "Erratum (Nature Eq. 2): wrong paper.",
                                 "Erratum (ConPro Eq. 2) no colon."])
def test_a_malformed_marker_is_refused_with_its_place(bad):
    with pytest.raises(ValueError, match="pkg.fn: an erratum must start"):
        errata.from_docstring(f"Summary.\n\n{bad}\n", "pkg.fn")


def test_the_command_prints_every_erratum(capsys):
    assert errata.main() == 0
    out = capsys.readouterr().out
    assert out.count("(refimpl.losses.") == len(errata.collect())
