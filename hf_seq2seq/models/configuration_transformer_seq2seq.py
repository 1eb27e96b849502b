"""Configuration of the scaled dot-product Transformer encoder-decoder (Vaswani et al. 2017).

Shipped to the Hub as custom code: imports only transformers and its flat sibling
``configuration_utils_seq2seq`` (the shared value checks), never the package.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from .configuration_utils_seq2seq import check_bool, check_choice, check_float, check_int

NORM_STYLES = ("post", "pre")
POSITION_EMBEDDINGS = ("sinusoidal", "learned")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu", "swish", "tanh")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


class TransformerSeq2SeqConfig(PretrainedConfig):
    r"""Configuration of [`TransformerSeq2SeqForConditionalGeneration`].

    The defaults give a ~7.6M-parameter model for Multi30k-sized work with an 8k joint vocabulary
    (d_model 256, 3 + 3 layers, 4 heads, FFN 1024, dropout 0.1, tied embeddings).

    Args:
        vocab_size: size of the joint source/target vocabulary.
        d_model: model width D (the paper's d_model).
        encoder_layers / decoder_layers: number of encoder / decoder blocks (the paper's N).
        num_attention_heads: heads H per attention; ``d_model`` must be divisible by it (Dh = D / H).
        ffn_dim: inner width of the position-wise feed-forward network (the paper's d_ff, Sec. 3.3).
        dropout: dropout on embeddings and on every sub-layer output before the residual add (Sec. 5.4).
        attention_dropout: dropout on the attention probabilities.
        activation_dropout: dropout after the FFN activation.
        activation_function: FFN non-linearity, one of ``ACTIVATIONS`` (the paper uses ReLU).
        norm_style: ``"post"`` (the paper: ``LayerNorm(x + Sublayer(x))``) or ``"pre"``
            (``x + Sublayer(LayerNorm(x))`` plus a final LayerNorm on encoder and decoder; more stable when deep).
        position_embedding: ``"sinusoidal"`` (Sec. 3.5, computed, not learned) or ``"learned"``.
        max_position_embeddings: longest sequence the position table covers (also the truncation length
            tokenizers and pipelines use).
        scale_embedding: multiply token embeddings by sqrt(d_model) (Sec. 3.4).
        tie_word_embeddings: share encoder input, decoder input and output projection weights (Sec. 3.4; needs
            a joint vocabulary); ``False`` gives three separate (V, D) matrices.
        output_bias: a bias in the output projection (``logits = h W^T + b``; ``lm_head.bias``), as Marian's
            ``final_logits_bias`` and eole's ``generator_bias`` (the paper's projection has none; default off).
        label_smoothing: label smoothing of the cross-entropy loss, in [0, 1) (Sec. 5.4 uses 0.1).
        init_std: standard deviation of the normal initialisation of Linear / Embedding weights.
        layer_norm_eps: the epsilon of every LayerNorm, added to the variance (1e-5, torch's default; JoeyNMT and
            OpenNMT-py use 1e-6, so models converted from them keep theirs).
        pad_token_id / bos_token_id / eos_token_id / decoder_start_token_id: special ids (0 / 1 / 2 / 1).

    ``num_hidden_layers`` reads the decoder layer count (what ``DynamicCache(config=...)`` sizes itself by),
    ``hidden_size`` reads ``d_model``. Invalid values raise ``ValueError`` naming the option, the value and the
    valid choices.
    """

    model_type = "transformer_seq2seq"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {"num_hidden_layers": "decoder_layers", "hidden_size": "d_model"}

    def __init__(
        self,
        vocab_size: int = 8000,
        d_model: int = 256,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        num_attention_heads: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        activation_function: str = "relu",
        norm_style: str = "post",
        position_embedding: str = "sinusoidal",
        max_position_embeddings: int = 256,
        scale_embedding: bool = True,
        tie_word_embeddings: bool = True,
        output_bias: bool = False,
        label_smoothing: float = 0.0,
        init_std: float = 0.02,
        layer_norm_eps: float = 1e-5,
        use_cache: bool = True,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 1,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.num_attention_heads = num_attention_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation_function = activation_function
        self.norm_style = norm_style
        self.position_embedding = position_embedding
        self.max_position_embeddings = max_position_embeddings
        self.scale_embedding = scale_embedding
        self.tie_word_embeddings = tie_word_embeddings
        self.output_bias = output_bias
        self.label_smoothing = label_smoothing
        self.init_std = init_std
        self.layer_norm_eps = layer_norm_eps
        self.use_cache = use_cache
        attn = kwargs.get("attn_implementation")
        if attn is not None and not isinstance(attn, dict):
            check_choice(None, "attn_implementation", attn, ATTN_IMPLEMENTATIONS)
        self._validate()
        # transformers' typed signature omits the special-token kwargs it accepts through **kwargs
        super().__init__(  # type: ignore[call-arg]
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )

    def _validate(self) -> None:
        for option in (
            "vocab_size",
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "num_attention_heads",
            "ffn_dim",
            "max_position_embeddings",
        ):
            check_int(None, option, getattr(self, option))
        if self.d_model % self.num_attention_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by num_attention_heads={self.num_attention_heads}; "
                f"valid choices: a d_model that is a multiple of num_attention_heads"
            )
        if self.position_embedding == "sinusoidal" and self.d_model % 2:
            raise ValueError(
                f"d_model={self.d_model} is odd; sinusoidal position_embedding needs an even d_model"
            )
        for option in ("dropout", "attention_dropout", "activation_dropout", "label_smoothing"):
            check_float(None, option, getattr(self, option), 0, 1)
        check_choice(None, "activation_function", self.activation_function, ACTIVATIONS)
        check_choice(None, "norm_style", self.norm_style, NORM_STYLES)
        check_choice(None, "position_embedding", self.position_embedding, POSITION_EMBEDDINGS)
        check_bool(None, "scale_embedding", self.scale_embedding)
        check_bool(None, "tie_word_embeddings", self.tie_word_embeddings)
        check_bool(None, "output_bias", self.output_bias)
        if (
            isinstance(self.init_std, bool)
            or not isinstance(self.init_std, (int, float))
            or self.init_std <= 0
        ):
            raise ValueError(f"init_std={self.init_std!r} is invalid; valid values: a float > 0")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
            raise ValueError(f"layer_norm_eps={eps!r} is invalid; valid values: a float > 0")


__all__ = ["TransformerSeq2SeqConfig"]


# Every `save_pretrained` (Seq2SeqTrainer.save_model included) writes `auto_map` into config.json and copies
# this file and its flat siblings, so the folder loads with `trust_remote_code=True` where this package is absent.
TransformerSeq2SeqConfig.register_for_auto_class()
