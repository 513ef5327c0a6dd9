"""The transformers VLM judge, tested offline with a tiny randomly initialised LLaVA saved locally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evals import longtext, prism
from evals.judges.vlm import VlmJudge, prism_instruction


def build_tiny_llava(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["a photo of a cat", '{"score": 7}'], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    template = (
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
        "{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=template,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def judge(tmp_path_factory: pytest.TempPathFactory) -> VlmJudge:
    folder = build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")
    return VlmJudge(folder, max_new_tokens=6)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)


def test_loads_local_weights_and_decodes_deterministically(judge: VlmJudge) -> None:
    assert judge.name == "vlm-tiny-llava"
    first = judge.chat(image(0), "describe")
    assert isinstance(first, str) and first == judge.chat(image(0), "describe")


def test_batched_replies_are_those_of_one_image_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")
    batched = VlmJudge(folder, max_new_tokens=6, batch_size=3)
    single = VlmJudge(folder, max_new_tokens=6, batch_size=1)
    assert batched.device == "cpu" and batched.processor.tokenizer.padding_side == "left"
    turns = [(image(i), "describe" if i % 2 else "a much longer instruction, to pad") for i in range(5)]
    assert batched.chat_many(turns) == single.chat_many(turns) == [single.chat(im, t) for im, t in turns]


def test_prism_records_carry_the_judge_and_go_through_the_official_parse(
    judge: VlmJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = judge.judge_prism(
        [("alignment", "entity", 0, "a cat", image(1)), ("aesthetic", "entity", 0, "a cat", image(1))]
    )
    assert [r.judge for r in records] == ["vlm-tiny-llava"] * 2
    replies = iter(['```json\n{"justification": "ok", "score": 6,}\n```', "not json at all"])
    monkeypatch.setattr(judge, "chat_many", lambda turns: [next(replies) for _ in turns])
    scripted = judge.judge_prism(
        [("alignment", "style", 0, "p", image(2)), ("aesthetic", "style", 0, "p", image(2))]
    )
    assert scripted[0].value == {"justification": "ok", "score": 6} and scripted[1].value is prism.NOT_SAVED
    summary = prism.summarize(scripted)
    assert summary.headline == 6.0 and summary.counts == {"alignment": 1, "aesthetic": 0}


def test_ocr_by_vlm_feeds_longtext_with_the_official_cleanup(
    judge: VlmJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(judge, "chat_many", lambda turns: ["FRESH BREWS\nNo text recognized."] * len(turns))
    (rec,) = judge.judge_longtext([("0_0.png", 0, image(3))])
    assert rec.ocr_results == "FRESH BREWS\n" and rec.judge == "vlm-tiny-llava"
    assert longtext.match_counts(["FRESH BREWS, EVERY DAY"], rec.ocr_results) == (2, 4)
    (j,) = judge.judge_cvtg([("CVTG", 2, "0", image(4))])
    assert j.ocr_lines == ("FRESH BREWS",) and j.judge == "vlm-tiny-llava"


def test_instruction_and_missing_model(tmp_path: Path) -> None:
    text = prism_instruction("alignment", "composition", "two red apples")
    assert text.endswith("text prompt: two red apples") and '"score"' in text
    assert "aesthetics" in prism_instruction("aesthetic", "composition", "x")
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        VlmJudge(tmp_path / "absent")
