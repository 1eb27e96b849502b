"""The training options that shape the data at scale (issue 18): the epoch's batches as int32 arrays, the
tokenizer's seeded sample, --pad_to_multiple_of, --streaming's refusal of image data, --bf16_weights' refusal of
autocast precisions."""

from __future__ import annotations

import pytest

from hf_seq2seq.data import (
    TokenBatchSampler,
)
from hf_seq2seq.tokenization import train_tokenizer


def test_epoch_batches_are_the_samplers_batches_as_int32_arrays():
    """The loop's epoch (tasks.epoch_batches) holds the sampler's batches as int32 arrays, the same batches that
    iterating the sampler gives (what it returned as lists of lists before), and the DataLoader gets them as
    lists one at a time."""
    import numpy as np

    from hf_seq2seq.training.loop import IndexLists
    from hf_seq2seq.training.task import epoch_batches

    lengths = np.random.RandomState(0).randint(1, 60, size=5000)
    arrays = epoch_batches(lengths, 300, seed=3, epoch=2)
    sampler = TokenBatchSampler(lengths, 300, seed=3)
    sampler.set_epoch(2)
    assert [a.tolist() for a in arrays] == list(sampler)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int32 for a in arrays)
    assert sorted(np.concatenate(arrays).tolist()) == list(range(5000))
    assert list(IndexLists(arrays[:3])) == [a.tolist() for a in arrays[:3]] and len(
        IndexLists(arrays)
    ) == len(arrays)


def test_tokenizer_is_trained_on_a_seeded_sample_of_a_large_split():
    """--tokenizer_train_samples: a split up to that size is used whole (today's behaviour for corpora up to 1M
    pairs, the default); a larger one gives that many distinct pairs of the split, in corpus order, the same for
    the same --seed; a stream gives its first min(N, --streaming_buffer_size) pairs; 0 is refused."""
    from datasets import Dataset

    from hf_seq2seq.training import DataArguments
    from hf_seq2seq.training.task import _tokenizer_pairs

    pairs = [{"de": f"satz {i}", "en": f"sentence {i}"} for i in range(50)]
    train = Dataset.from_dict({"translation": pairs})
    assert DataArguments(task="numbers").tokenizer_train_samples == 1_000_000
    assert _tokenizer_pairs(train, DataArguments(task="numbers", tokenizer_train_samples=50)) == pairs
    args = DataArguments(task="numbers", tokenizer_train_samples=20)
    sample = _tokenizer_pairs(train, args, seed=1)
    numbers = [int(p["en"].split()[1]) for p in sample]
    assert len(set(numbers)) == 20 and numbers == sorted(numbers) and sample == [pairs[i] for i in numbers]
    assert _tokenizer_pairs(train, args, seed=1) == sample and _tokenizer_pairs(train, args, seed=2) != sample
    stream = train.to_iterable_dataset()
    assert _tokenizer_pairs(stream, args) == pairs[:20]
    args = DataArguments(task="numbers", tokenizer_train_samples=20, streaming_buffer_size=8)
    assert _tokenizer_pairs(stream, args) == pairs[:8]
    with pytest.raises(ValueError, match="--tokenizer_train_samples=0 is invalid"):
        DataArguments(task="numbers", tokenizer_train_samples=0)


def test_streaming_refuses_image_data():
    from hf_seq2seq.training.recipe import parse_args

    with pytest.raises(ValueError, match="--streaming reads text corpora"):
        parse_args(
            ["--task", "shapes", "--model_type", "captioning", "--streaming", "--output_dir", "/tmp/unused"]
        )


def test_pad_to_multiple_of_defaults_under_compile_pads_batches_and_refuses_bad_values():
    """--pad_to_multiple_of does what its help says: 16 by default with --torch_compile, none without it, the
    training collator pads every batch length to that multiple, and 0 or a negative value is one clear error."""
    from hf_seq2seq.training import DataArguments, ModelArguments, TrainArguments
    from hf_seq2seq.training.task import TextTask

    assert TrainArguments(torch_compile=True).pad_to_multiple_of == 16
    assert TrainArguments().pad_to_multiple_of is None
    for bad in (0, -8):
        with pytest.raises(ValueError, match=f"--pad_to_multiple_of={bad} is invalid"):
            TrainArguments(pad_to_multiple_of=bad)

    tokenizer = train_tokenizer(["eins zwei drei vier", "one two three four"], vocab_size=60)
    task = TextTask.__new__(TextTask)  # only the collator is exercised: it reads nothing but train_args
    task.data_args, task.model_args = DataArguments(task="numbers"), ModelArguments()
    task.train_args = TrainArguments(pad_to_multiple_of=8)
    features = [
        {"input_ids": [5, 6, 7, 2], "labels": [8, 2]},
        {"input_ids": [5, 2], "labels": [9, 10, 11, 2]},
    ]
    batch = task.collator(tokenizer, None)(features)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["labels"].shape[1] % 8 == 0


def test_bf16_weights_refuses_autocast_precisions(monkeypatch):
    from hf_seq2seq.training import TrainArguments
    from hf_seq2seq.training.setup import _check_precision

    for value in ("fp16", "bf16"):
        with pytest.raises(ValueError, match=f"--bf16_weights with --mixed_precision={value}: "):
            TrainArguments(bf16_weights=True, mixed_precision=value)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ValueError, match="--bf16_weights with mixed precision fp16 \\(from the Accelerate"):
        _check_precision(TrainArguments(bf16_weights=True))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # a bf16 launch config: autocast off, no error
    args = TrainArguments(bf16_weights=True)
    assert "autocast is not used" in _check_precision(args) and args.mixed_precision == "no"
