"""PLACEHOLDER: replaced by the pipeline implementation (issue 6)."""


class Text2TextPipeline:  # placeholder
    pass


def register_pipeline() -> None:
    pass
