"""The request and response bodies of ``hf-seq2seq serve`` (pydantic models: validated here, described in the
OpenAPI schema at ``/docs`` and in docs/serving_openapi.json).

Requests are read by :mod:`hf_seq2seq.serving.app` itself (JSON, or a form for LibreTranslate's client) and then
validated with these models, so every bad input becomes one ``{"error": "..."}`` line naming the field, the value
and what is allowed, never FastAPI's list of validation details.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class ErrorResponse(BaseModel):
    """Every error: one line (LibreTranslate's shape)."""

    error: str


# ------------------------------------------------------------------------------------------- LibreTranslate
class LibreTranslateRequest(BaseModel):
    """``POST /translate`` (JSON or ``application/x-www-form-urlencoded``, as LibreTranslate takes it)."""

    model_config = ConfigDict(extra="ignore")

    q: StrictStr | list[StrictStr] = Field(description="the text, or a list of texts")
    source: StrictStr = Field(description="source language code (a model's source; see GET /languages)")
    target: StrictStr = Field(description="target language code")
    format: StrictStr = Field("text", description="only 'text' (no HTML translation)")
    alternatives: StrictInt = Field(0, ge=0, description="extra hypotheses per text (n-best minus one)")
    api_key: StrictStr | None = Field(None, description="required when the server was started with --api_key")


class LibreTranslateResponse(BaseModel):
    translatedText: str | list[str]  # noqa: N815  (LibreTranslate's field name)
    alternatives: list[str] | list[list[str]] | None = None


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]


# --------------------------------------------------------------------------------------------------- native
class TranslateRequest(BaseModel):
    """``POST /v1/translate``: a batch of segments for one model."""

    model_config = ConfigDict(extra="forbid")

    segments: list[StrictStr] = Field(description="the source segments; an empty one gets empty hypotheses")
    model: StrictStr | None = Field(None, description="a name from GET /v1/models (optional with one model)")
    num_beams: StrictInt | None = Field(
        None, description="beam size (default: the model's generation config)"
    )
    n_best: StrictInt = Field(1, description="hypotheses per segment, best first")
    max_new_tokens: StrictInt | None = Field(None, description="length limit (default: the model's)")
    return_scores: StrictBool = Field(
        False, description="each hypothesis's length-normalised log-probability"
    )
    return_attention: StrictBool = Field(
        False,
        description="the best hypothesis's cross-attention (torch: every layer and head; ctranslate2: the export's one attention, 1 x 1): layers x heads x target x source",
    )
    return_alignment: StrictBool = Field(
        False,
        description="each hypothesis's word alignment in Pharaoh format (i-j: source word i, target word j, 0-based "
        "whitespace words; the attention argmax, as `hf-seq2seq translate --alignments`); torch and ctranslate2",
    )
    api_key: StrictStr | None = None


class Attention(BaseModel):
    """The cross-attention of the best hypothesis: ``weights[layer][head][t][s]``, row t the attention paid to the
    source tokens while predicting target token t (the last target token is ``</s>``)."""

    source_tokens: list[str]
    target_tokens: list[str]
    weights: list[list[list[list[float]]]]


class SegmentResult(BaseModel):
    hypotheses: list[str]
    scores: list[float] | None = None
    attention: Attention | None = None
    alignments: list[str] | None = None


class TranslateResponse(BaseModel):
    model: str
    results: list[SegmentResult]


class ModelInfo(BaseModel):
    name: str
    family: str | None
    engine: str
    source: str | None
    target: str | None
    path: str
    max_source_length: int
    default_num_beams: int
    attention: bool = Field(
        description="whether return_attention is available (the torch and ctranslate2 engines)"
    )
    config: dict


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class StatusResponse(BaseModel):
    status: str
    models: list[str] = []
