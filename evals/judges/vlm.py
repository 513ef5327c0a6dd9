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
    """Greedy decoding with a local image-text-to-text model (`AutoModelForImageTextToText`), batched:
    ``batch_size`` images per `generate` call, prompts padded on the left (so that every reply starts
    right after its own prompt). ``device="auto"``: the first CUDA device when torch sees one, else the
    CPU."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        max_new_tokens: int = 1024,
        device: str = "auto",
        batch_size: int = 8,
        name: str | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"VLM judge: no local model folder at {path} (weights are never downloaded)"
            )
        if batch_size < 1:
            raise ValueError(f"VLM judge: batch_size must be at least 1, got {batch_size}")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._torch: Any = torch
        self.processor: Any = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.padding_side = "left"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.model: Any = cast(
            Any, AutoModelForImageTextToText.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        )
        self.model.to(device)
        self.model.eval()
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.name = name or f"vlm-{path.name}"

    def chat_many(self, turns: list[tuple[ImageLike, str]]) -> list[str]:
        """One user turn (image then text) each → the decoded replies, in order, ``batch_size`` at a
        time."""
        replies: list[str] = []
        for start in range(0, len(turns), self.batch_size):
            chunk = turns[start : start + self.batch_size]
            prompts = [
                self.processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
                    add_generation_prompt=True,
                )
                for _, text in chunk
            ]
            inputs = self.processor(
                images=[_pil(image) for image, _ in chunk], text=prompts, return_tensors="pt", padding=True
            ).to(self.device)
            with self._torch.no_grad():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            replies += [str(r) for r in self.processor.batch_decode(new, skip_special_tokens=True)]
        return replies

    def chat(self, image: ImageLike, text: str) -> str:
        """One user turn (image then text) → the decoded reply."""
        return self.chat_many([(image, text)])[0]

    def judge_prism(self, items: Iterable[tuple[str, str, int, str, ImageLike]]) -> list[PrismRecord]:
        """``(eval_type, category, j, prompt, image)`` → records through PRISM's official parse."""
        rows = list(items)
        replies = self.chat_many(
            [(image, prism_instruction(t, c, prompt)) for t, c, _, prompt, image in rows]
        )
        return [
            record_from_reply(t, c, j, reply, self.name)
            for (t, c, j, _, _), reply in zip(rows, replies, strict=True)
        ]

    def ocr_many(self, images: list[ImageLike]) -> list[str]:
        """OCR-by-VLM, then LongText's official clean-up (bug included)."""
        return [clean_ocr_output(r) for r in self.chat_many([(image, OCR_INSTRUCTION) for image in images])]

    def ocr(self, image: ImageLike) -> str:
        return self.ocr_many([image])[0]

    def judge_longtext(self, items: Iterable[tuple[str, int, ImageLike]]) -> list[LongTextRecord]:
        rows = list(items)
        texts = self.ocr_many([image for _, _, image in rows])
        return [
            LongTextRecord(name, pid, text, self.name)
            for (name, pid, _), text in zip(rows, texts, strict=True)
        ]

    def judge_cvtg(self, items: Iterable[tuple[str, int, str, ImageLike]]) -> list[CvtgJudgement]:
        rows = list(items)
        texts = self.ocr_many([image for _, _, _, image in rows])
        out = []
        for (type_, area, index, _), text in zip(rows, texts, strict=True):
            lines = tuple(line for line in text.splitlines() if line.strip())
            out.append(CvtgJudgement(type_, area, str(index), lines, judge=self.name))
        return out
