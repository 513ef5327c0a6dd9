"""CPU OCR judges (non-official) read back rendered ground truth and score noise near zero."""

from __future__ import annotations

import numpy as np
import pytest

from evals import cvtg, longtext
from evals.cvtg.prompts import QUOTED
from evals.judges.ocr import available_engines, judge_cvtg, judge_longtext, make_engine
from evals.judges.render import font_path, render_lines, wrap_words


@pytest.fixture(scope="module")
def cvtg_prompts() -> list[cvtg.CvtgPrompt]:
    return cvtg.load_prompts()


def gt_image(prompt: cvtg.CvtgPrompt) -> np.ndarray:
    return render_lines(wrap_words(" ".join(QUOTED.findall(prompt.prompt)).split()))


def test_engines_and_font_are_installed() -> None:
    assert available_engines() == ["tesseract", "rapidocr"]
    assert make_engine().name == "ocr-tesseract"
    path = font_path()
    assert path is not None and path.suffix == ".ttf"
    with pytest.raises(ValueError, match="unknown OCR engine"):
        make_engine("paddle")


def test_tesseract_reads_rendered_cvtg_ground_truth(cvtg_prompts: list[cvtg.CvtgPrompt]) -> None:
    picks = [cvtg_prompts[i] for i in (0, 450, 900, 1003, 1500, 1999)]  # both types, all areas
    engine = make_engine("tesseract")
    judgements = judge_cvtg(engine, [(p.type, p.area, str(p.index), gt_image(p)) for p in picks])
    assert {j.judge for j in judgements} == {"ocr-tesseract"}
    summary = cvtg.summarize(judgements, cvtg.prompt_table(cvtg_prompts))
    assert summary.total_words == sum(len(p.gt_words) for p in picks) > 40
    assert summary.word_accuracy >= 0.95
    assert summary.ned >= 0.95


def test_tesseract_reads_rendered_longtext_ground_truth() -> None:
    prompts = longtext.load_prompts()
    picks = sorted(prompts, key=lambda p: -len(" ".join(p.text)))[:2]
    engine = make_engine("tesseract")
    items = [
        (
            f"{p.prompt_id}_0.png",
            p.prompt_id,
            render_lines(wrap_words(" ".join(p.text).split(), font_size=28), font_size=28),
        )
        for p in picks
    ]
    records = judge_longtext(engine, items)
    summary = longtext.summarize(records, {p.prompt_id: p.text for p in prompts})
    assert summary.total > 60
    assert summary.headline >= 0.95
    assert all(r.judge == "ocr-tesseract" for r in records)


def test_noise_scores_near_zero(cvtg_prompts: list[cvtg.CvtgPrompt]) -> None:
    rng = np.random.default_rng(0)
    picks = cvtg_prompts[:3]
    engine = make_engine("tesseract")
    noise = [rng.integers(0, 256, (256, 512, 3), dtype=np.uint8) for _ in picks]
    judgements = judge_cvtg(
        engine, [(p.type, p.area, str(p.index), img) for p, img in zip(picks, noise, strict=True)]
    )
    summary = cvtg.summarize(judgements, cvtg.prompt_table(cvtg_prompts))
    assert summary.word_accuracy <= 0.05
    lt = longtext.load_prompts()[:2]
    records = judge_longtext(
        engine, [(f"{p.prompt_id}_0.png", p.prompt_id, n) for p, n in zip(lt, noise, strict=False)]
    )
    assert longtext.summarize(records, {p.prompt_id: p.text for p in lt}).headline <= 0.05


def test_rapidocr_reads_single_word_lines() -> None:
    # RapidOCR's zh+en recogniser keeps words when each line holds one word (it tends to drop spaces
    # between English words, so multi-word lines are not asserted here).
    engine = make_engine("rapidocr")
    lines = engine.read_lines(render_lines(["OPEN", "Coffee", "SALE"], width=320, font_size=40))
    assert engine.name == "ocr-rapidocr"
    assert [w.lower() for w in lines] == ["open", "coffee", "sale"]


def test_ocr_failure_is_the_official_per_image_error() -> None:
    class Broken:
        name = "ocr-broken"

        def read_lines(self, image: object) -> list[str]:
            raise RuntimeError("engine crashed")

    (j,) = judge_cvtg(Broken(), [("CVTG", 2, "0", np.zeros((8, 8, 3), np.uint8))])
    assert j.ocr_error and j.ocr_lines is None
    assert cvtg.ocr_stats(["read"], j.ocr_lines, error=j.ocr_error) == (1, 0, [0.0])
