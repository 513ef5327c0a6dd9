"""A `transformers` vision-language judge that loads LOCAL weights only (no hub access).

Uses: PRISM-style 0–10 scoring (the reply goes through PRISM's official parse, §3.3) and OCR-by-VLM
for LongText / CVTG-2K (the reply goes through LongText's official clean-up, §5.3). The instructions
here are i1lab's own wording, not the official templates, so the judge is labelled
``vlm-<model folder name>`` and is never "official" — even with the official weights (for PRISM's
official numbers run `eval_qwen25.py` through `evals.judges.official`).

Needs torch (`pip install torch`); imported lazily so the rest of `evals` works without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from PIL import Image

from evals.cvtg.score import CvtgJudgement
from evals.longtext.score import LongTextRecord, clean_ocr_output
from evals.prism.score import PrismRecord, record_from_reply

ASPECTS: Final[dict[str, str]] = {
    "affection": "whether the described content is depicted and the requested emotion is conveyed",
    "composition": "object counts, attributes and spatial relations",
    "entity": "whether the named entity and its described scene are rendered accurately",
    "imagination": "whether the imaginative object's described features form one coherent object",
    "style": "whether the content is right and the requested style is executed faithfully",
    "text_rendering": "whether the requested text is rendered exactly and legibly in the right place",
    "long_text": "whether all of the requested long text is rendered exactly and legibly",
}
AESTHETIC: Final = "technical quality and aesthetics (realism, coherence, lighting, absence of artifacts)"
OCR_INSTRUCTION: Final = (
    "Transcribe all text visible in the image. Reply with the text only, without repeating anything. "
    "If there is no text, reply 'No text recognized'."
)

ImageLike = npt.ArrayLike | Path | str


def prism_instruction(eval_type: str, category: str, prompt: str) -> str:
    """i1lab's judging instruction (0–10 JSON reply) for one image."""
    aspect = AESTHETIC if eval_type == "aesthetic" else ASPECTS[category]
    return (
        "You are a strict judge of an image generated from a text prompt. Judge "
        f"{aspect}. Reply with a single JSON object "
        '{"justification": "<one sentence>", "score": <integer from 0 to 10>}.\n\n'
        f"text prompt: {prompt}"
    )


def _pil(image: ImageLike) -> Image.Image:
    if isinstance(image, (str, Path)):
        with Image.open(image) as img:
            return img.convert("RGB")
    return Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")


class VlmJudge:
    """Greedy decoding with a local image-text-to-text model (`AutoModelForImageTextToText`)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_new_tokens: int = 1024,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"VLM judge: no local model folder at {path} (weights are never downloaded)"
            )
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._torch: Any = torch
        self.processor: Any = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        self.model: Any = cast(
            Any, AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True)
        )
        self.model.to(device)
        self.model.eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.name = name or f"vlm-{path.name}"

    def chat(self, image: ImageLike, text: str) -> str:
        """One user turn (image then text) → the decoded reply."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=[_pil(image)], text=[prompt], return_tensors="pt").to(self.device)
        with self._torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        return str(self.processor.batch_decode(new, skip_special_tokens=True)[0])

    def judge_prism(self, items: Iterable[tuple[str, str, int, str, ImageLike]]) -> list[PrismRecord]:
        """``(eval_type, category, j, prompt, image)`` → records through PRISM's official parse."""
        return [
            record_from_reply(t, c, j, self.chat(image, prism_instruction(t, c, prompt)), self.name)
            for t, c, j, prompt, image in items
        ]

    def ocr(self, image: ImageLike) -> str:
        """OCR-by-VLM, then LongText's official clean-up (bug included)."""
        return clean_ocr_output(self.chat(image, OCR_INSTRUCTION))

    def judge_longtext(self, items: Iterable[tuple[str, int, ImageLike]]) -> list[LongTextRecord]:
        return [LongTextRecord(name, pid, self.ocr(image), self.name) for name, pid, image in items]

    def judge_cvtg(self, items: Iterable[tuple[str, int, str, ImageLike]]) -> list[CvtgJudgement]:
        out = []
        for type_, area, index, image in items:
            lines = tuple(line for line in self.ocr(image).splitlines() if line.strip())
            out.append(CvtgJudgement(type_, area, str(index), lines, judge=self.name))
        return out
