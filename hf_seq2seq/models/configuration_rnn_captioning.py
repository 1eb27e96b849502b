"""Configuration of the image-captioning model with visual attention (Xu et al. 2015, "Show, Attend and Tell").

Shipped to the Hub as custom code: imports only transformers and its flat sibling
``configuration_utils_seq2seq`` (the shared value checks), never the package.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from .configuration_utils_seq2seq import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_token_ids,
    config_error,
)

BACKBONES = ("cnn", "resnet18", "resnet34", "resnet50")
ATTENTIONS = (
    "bahdanau",
    "dot",
    "general",
    "concat",
)  # the score registry's names (attention.ATTENTION_SCORES)
LUONG_ATTENTIONS = ("dot", "general", "concat")
CELLS = ("lstm", "gru")
OWNER = "ImageCaptioningConfig"  # error messages start with it


class ImageCaptioningConfig(PretrainedConfig):
    r"""Configuration of [`ImageCaptioningForConditionalGeneration`].

    Encoder (image → grid of annotation vectors ``a_i``, Xu et al. 2015 sec. 3.1.1):
        image_size (`int`, defaults to 224): square input side, in pixels (the image processor resizes to it).
        num_channels (`int`, defaults to 3).
        backbone (`"cnn" | "resnet18" | "resnet34" | "resnet50"`, defaults to `"cnn"`): `"cnn"` is our small CNN
            (no extra dependency); the ResNets need torchvision (built without weights: load ImageNet weights into
            `model.encoder.backbone` yourself) and give a grid of side `image_size // 32`.
        encoder_channels (`list[int]`, defaults to `[32, 64, 128, 256]`): one stage per entry, each
            `conv3x3 -> ReLU -> conv3x3 -> ReLU -> maxpool 2x2`; the grid side is `image_size // 2**len(...)`
            (224 → 14×14 regions, the grid of Xu et al.). Only for `backbone="cnn"`.
        position_embedding (`bool`, defaults to True): add a learned embedding per grid cell to the annotation
            vectors. Deviation from Xu et al. (their VGG features carry position implicitly through a large
            receptive field; a small CNN does not, and captions that say "left of" need it).
        coord_channels (`bool`, defaults to True): append x/y coordinate channels to the image before the first
            convolution (CoordConv, Liu et al. 2018), so features encode where they are, nonlinearly; unlike the
            position embedding this survives the mean that initialises the decoder. Only for `backbone="cnn"`.

    Decoder (the RNN family's attention decoder, Xu et al. 2015 sec. 3.1.2):
        embedding_size (`int`, defaults to 256), hidden_size (`int`, defaults to 512): the decoder state size;
            annotation vectors are projected to it (1×1 convolution) so that every attention score applies.
        decoder_layers (`int`, defaults to 1), cell (`"lstm" | "gru"`, defaults to `"lstm"`).
        attention (`"bahdanau" | "dot" | "general" | "concat"`, defaults to `"bahdanau"`): `"bahdanau"` scores with
            the previous state ``h_{t-1}`` as Xu et al. (eq. 4–5); the Luong scores use the current state.
        input_feeding (`bool`, defaults to False): Luong input feeding (only with a Luong score).
        attention_gate (`bool`, defaults to True): the gating scalar ``β_t = σ(f_β(h_{t-1}))`` multiplying the
            context (Xu et al. sec. 4.2.1); only with `attention="bahdanau"`.
        doubly_stochastic_weight (`float` >= 0, defaults to 1.0): ``λ`` of the doubly stochastic attention penalty
            ``λ Σ_i (1 - Σ_t α_ti)^2`` (Xu et al. eq. 14), added to the loss; 0 turns it off.
        dropout (`float` in [0, 1), defaults to 0.3), label_smoothing (`float` in [0, 1), defaults to 0.0).
        tie_word_embeddings (`bool`, defaults to True): decoder embedding and output layer share one matrix.
        vocab_size (`int`, defaults to 8000).
        max_position_embeddings (`int`, defaults to 64): not used by the model; the caption length limit for
            tokenizers and pipelines.
        use_cache (`bool`, defaults to True): whether `forward` returns the decoder state (`cache`) when the call
            does not say (a call with `labels` never does).
        pad_token_id / bos_token_id / eos_token_id / decoder_start_token_id: 0 / 1 / 2 / 1.
    """

    model_type = "rnn_captioning"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {"num_hidden_layers": "decoder_layers"}

    def __init__(
        self,
        image_size: int = 224,
        num_channels: int = 3,
        backbone: str = "cnn",
        encoder_channels: list[int] | tuple[int, ...] = (32, 64, 128, 256),
        position_embedding: bool = True,
        coord_channels: bool = True,
        vocab_size: int = 8000,
        embedding_size: int = 256,
        hidden_size: int = 512,
        decoder_layers: int = 1,
        cell: str = "lstm",
        attention: str = "bahdanau",
        input_feeding: bool = False,
        attention_gate: bool = True,
        doubly_stochastic_weight: float = 1.0,
        dropout: float = 0.3,
        label_smoothing: float = 0.0,
        tie_word_embeddings: bool = True,
        max_position_embeddings: int = 64,
        use_cache: bool = True,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 1,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        check_choice(OWNER, "backbone", backbone, BACKBONES)
        check_choice(OWNER, "attention", attention, ATTENTIONS)
        check_choice(OWNER, "cell", cell, CELLS)
        for name, value, minimum in (
            ("image_size", image_size, 1),
            ("num_channels", num_channels, 1),
            ("vocab_size", vocab_size, 4),
            ("embedding_size", embedding_size, 1),
            ("hidden_size", hidden_size, 1),
            ("decoder_layers", decoder_layers, 1),
            ("max_position_embeddings", max_position_embeddings, 1),
        ):
            check_int(OWNER, name, value, minimum)
        for name, value in (
            ("position_embedding", position_embedding),
            ("coord_channels", coord_channels),
            ("input_feeding", input_feeding),
            ("attention_gate", attention_gate),
            ("tie_word_embeddings", tie_word_embeddings),
            ("use_cache", use_cache),
        ):
            check_bool(OWNER, name, value)
        check_float(OWNER, "dropout", dropout, 0.0, 1.0)
        check_float(OWNER, "label_smoothing", label_smoothing, 0.0, 1.0)
        check_float(OWNER, "doubly_stochastic_weight", doubly_stochastic_weight, 0.0, None)
        if not isinstance(encoder_channels, (list, tuple)) or not encoder_channels:
            config_error(OWNER, "encoder_channels", encoder_channels, "a non-empty list of integers >= 1")
        for width in encoder_channels:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                config_error(OWNER, "encoder_channels", encoder_channels, "a non-empty list of integers >= 1")
        stride = 32 if backbone != "cnn" else 2 ** len(encoder_channels)
        if image_size < stride:
            raise ValueError(
                f"ImageCaptioningConfig: `image_size` must be >= {stride} (the encoder's total stride for "
                f"backbone={backbone!r} with {len(encoder_channels)} stages), got {image_size}"
            )
        if input_feeding and attention not in LUONG_ATTENTIONS:
            raise ValueError(
                f"ImageCaptioningConfig: `input_feeding=True` needs a Luong attention {list(LUONG_ATTENTIONS)}, "
                f"got attention={attention!r}"
            )
        if attention_gate and attention != "bahdanau":
            raise ValueError(
                "ImageCaptioningConfig: `attention_gate=True` (Xu et al. sec. 4.2.1) is implemented for "
                f"attention='bahdanau' only, got attention={attention!r}; valid choices: ['bahdanau']"
            )
        check_token_ids(
            OWNER,
            vocab_size,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
        )
        self.image_size = image_size
        self.num_channels = num_channels
        self.backbone = backbone
        self.encoder_channels = list(encoder_channels)
        self.position_embedding = position_embedding
        self.coord_channels = coord_channels
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.decoder_layers = decoder_layers
        self.cell = cell
        self.attention = attention
        self.input_feeding = input_feeding
        self.attention_gate = attention_gate
        self.doubly_stochastic_weight = float(doubly_stochastic_weight)
        self.dropout = float(dropout)
        self.label_smoothing = float(label_smoothing)
        self.tie_word_embeddings = tie_word_embeddings
        self.max_position_embeddings = max_position_embeddings
        self.use_cache = use_cache
        # transformers' typed signature omits the special-token kwargs it accepts through **kwargs
        super().__init__(  # type: ignore[call-arg]
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            is_encoder_decoder=is_encoder_decoder,
            **kwargs,
        )

    @property
    def grid_size(self) -> int:
        """Side of the square grid of regions the encoder produces (S = grid_size**2 annotation vectors)."""
        stride = 32 if self.backbone != "cnn" else 2 ** len(self.encoder_channels)
        return self.image_size // stride


# Every `save_pretrained` (Seq2SeqTrainer.save_model included) writes `auto_map` into config.json and copies
# this file and its flat siblings, so the folder loads with `trust_remote_code=True` where this package is absent.
ImageCaptioningConfig.register_for_auto_class()
