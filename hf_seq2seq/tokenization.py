"""PLACEHOLDER: replaced by the tokenizer implementation (issue 2)."""


def train_tokenizer(*args, **kwargs):
    raise NotImplementedError
