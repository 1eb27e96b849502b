"""Configuration of the RNN encoder-decoder family (Sutskever/Cho seq2seq, Bahdanau and Luong attention).

Shipped to the Hub as custom code: imports only transformers and its flat sibling
``configuration_utils_seq2seq`` (the shared value checks), never the package.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from .configuration_utils_seq2seq import check_bool, check_choice, check_float, check_int, check_token_ids

CELLS = ("gru", "lstm")
ATTENTIONS = ("none", "bahdanau", "dot", "general", "concat")
LUONG_ATTENTIONS = ("dot", "general", "concat")
DECODER_INITS = ("bridge", "top_bridge", "top", "zero", "final")
COMBINE_ACTIVATIONS = ("tanh", "none")
POSITION_EMBEDDINGS = ("none", "sinusoidal")
OWNER = "RNNSeq2SeqConfig"  # error messages start with it


class RNNSeq2SeqConfig(PretrainedConfig):
    r"""Configuration of [`RNNSeq2SeqForConditionalGeneration`].

    Args:
        vocab_size (`int`, defaults to 8000): size of the joint source/target vocabulary.
        embedding_size (`int`, defaults to 256): token embedding size E (encoder and decoder).
        hidden_size (`int`, defaults to 512): decoder state size H, and the size of every encoder state. A
            bidirectional encoder runs `hidden_size // 2` units per direction (as OpenNMT-py's `brnn`), so the
            concatenated states have size H and every attention score, Luong's `dot` included, applies.
        encoder_layers / decoder_layers (`int`, defaults to 2 / 2): stacked RNN layers. When they differ, the
            decoder layers are aligned with the encoder's top layers: decoder layer `l` starts from encoder layer
            `max(0, encoder_layers - decoder_layers + l)`.
        cell (`"gru" | "lstm"`, defaults to `"gru"`).
        bidirectional_encoder (`bool`, defaults to True).
        attention (`"none" | "bahdanau" | "dot" | "general" | "concat"`, defaults to `"bahdanau"`):
            `"none"` is the Cho et al. (2014) model (the encoder's final state is the context at every step);
            `"bahdanau"` scores with the previous decoder state (Bahdanau et al. 2015); `"dot" | "general" |
            "concat"` are Luong et al. (2015) global attention scores with the current decoder state.
        input_feeding (`bool`, defaults to False): Luong et al. (2015) sec. 3.3; only with a Luong score.
        combine_bias (`bool`, defaults to False): a bias in Luong's ``W_c`` (eq. 5, ``h~_t = tanh(W_c [c_t; h_t] +
            b_c)``), as JoeyNMT's attentional layer has; only with a Luong score.
        combine_activation (`"tanh" | "none"`, defaults to `"tanh"`): the non-linearity of Luong's ``W_c`` (eq. 5);
            `"none"` gives ``h~_t = W_c [c_t; h_t] + b_c``, the output layer of OpenNMT-py's and eole's `mlp`
            attention; only with a Luong score.
        decoder_init (`"bridge" | "top_bridge" | "top" | "zero" | "final"`, defaults to `"bridge"`): the decoder's
            initial state. `"bridge"`: per decoder layer, `tanh(W_s h_final + b_s)` of the aligned encoder layer (LSTM cell:
            `W_c c_final + b_c`); `"top_bridge"`: one `tanh(W_s h_final + b_s)` of the top encoder layer for every
            decoder layer, the LSTM cell equal to it (JoeyNMT's `bridge`); `"top"`: the top encoder layer's final
            state itself for every layer and as the LSTM cell (JoeyNMT's `last`); `"zero"`: zeros; `"final"`: per
            decoder layer, the aligned encoder layer's final state itself (LSTM: its final cell), as OpenNMT-py and
            eole start their decoders.
        dropout (`float` in [0, 1), defaults to 0.2): on embeddings, between RNN layers and before the output layer.
        label_smoothing (`float` in [0, 1), defaults to 0.0): of the training cross-entropy.
        tie_word_embeddings (`bool`, defaults to True): encoder embedding, decoder embedding and output layer share
            one matrix (joint vocabulary). The decoder output (size H) is projected to E first when E != H.
        output_bias (`bool`, defaults to False): a bias in the output layer (`logits = W_y o_t + b_y`,
            `lm_head.bias`), as OpenNMT-py's and eole's generator has by default.
        scale_embedding (`bool`, defaults to False): multiply the token embeddings (encoder and decoder) by
            sqrt(embedding_size), as eole's RNN does (with its positions) and Vaswani et al. (2017) sec. 3.4.
        position_embedding (`"none" | "sinusoidal"`, defaults to `"none"`): `"sinusoidal"` adds the interleaved
            sinusoidal table of Vaswani et al. (2017) sec. 3.5 to the (scaled) embeddings, positions counted from 0
            on each side, as eole's RNN does by default (`position_encoding_type: SinusoidalInterleaved`); an RNN
            needs none (the recurrence orders the tokens).
        max_position_embeddings (`int`, defaults to 512): the tokenizer/pipeline truncation length (the sinusoidal
            positions are computed for any length).
        use_cache (`bool`, defaults to True): whether `forward` returns the decoder state (`cache`) when the call
            does not say (a call with `labels` never does).
        pad_token_id / bos_token_id / eos_token_id / decoder_start_token_id: 0 / 1 / 2 / 1.
    """

    model_type = "rnn_seq2seq"
    keys_to_ignore_at_inference = ["cache"]
    # generation utilities read `num_hidden_layers`: for this family it is the decoder's layer count
    attribute_map = {"num_hidden_layers": "decoder_layers"}

    def __init__(
        self,
        vocab_size: int = 8000,
        embedding_size: int = 256,
        hidden_size: int = 512,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        cell: str = "gru",
        bidirectional_encoder: bool = True,
        attention: str = "bahdanau",
        input_feeding: bool = False,
        combine_bias: bool = False,
        combine_activation: str = "tanh",
        decoder_init: str = "bridge",
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        tie_word_embeddings: bool = True,
        output_bias: bool = False,
        scale_embedding: bool = False,
        position_embedding: str = "none",
        max_position_embeddings: int = 512,
        use_cache: bool = True,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int = 1,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        check_int(OWNER, "vocab_size", vocab_size, 1)
        check_int(OWNER, "embedding_size", embedding_size, 1)
        check_int(OWNER, "hidden_size", hidden_size, 1)
        check_int(OWNER, "encoder_layers", encoder_layers, 1)
        check_int(OWNER, "decoder_layers", decoder_layers, 1)
        check_int(OWNER, "max_position_embeddings", max_position_embeddings, 1)
        check_choice(OWNER, "cell", cell, CELLS)
        check_choice(OWNER, "attention", attention, ATTENTIONS)
        flags = {
            "bidirectional_encoder": bidirectional_encoder,
            "input_feeding": input_feeding,
            "combine_bias": combine_bias,
            "tie_word_embeddings": tie_word_embeddings,
            "output_bias": output_bias,
            "scale_embedding": scale_embedding,
            "use_cache": use_cache,
        }
        for option, value in flags.items():
            check_bool(OWNER, option, value)
        check_choice(OWNER, "decoder_init", decoder_init, DECODER_INITS)
        check_choice(OWNER, "combine_activation", combine_activation, COMBINE_ACTIVATIONS)
        check_choice(OWNER, "position_embedding", position_embedding, POSITION_EMBEDDINGS)
        if position_embedding == "sinusoidal" and embedding_size % 2:
            raise ValueError(
                f"RNNSeq2SeqConfig: `embedding_size` must be even with `position_embedding='sinusoidal'` (sin and cos "
                f"pairs), got {embedding_size}"
            )
        check_float(OWNER, "dropout", dropout, 0, 1)
        check_float(OWNER, "label_smoothing", label_smoothing, 0, 1)
        luong_only = (
            ("input_feeding", input_feeding, False),
            ("combine_bias", combine_bias, False),
            ("combine_activation", combine_activation, "tanh"),
        )
        for option, setting, default in luong_only:
            if setting != default and attention not in LUONG_ATTENTIONS:
                raise ValueError(
                    f"RNNSeq2SeqConfig: `{option}={setting!r}` needs a Luong attention {list(LUONG_ATTENTIONS)}, "
                    f"got attention={attention!r}"
                )
        if decoder_init == "zero" and attention == "none":
            raise ValueError(
                "RNNSeq2SeqConfig: `decoder_init='zero'` needs an attention: with attention='none' the decoder "
                "would never see the source"
            )
        if bidirectional_encoder and hidden_size % 2:
            raise ValueError(
                f"RNNSeq2SeqConfig: `hidden_size` must be even with `bidirectional_encoder=True` (each direction "
                f"has hidden_size // 2 units), got {hidden_size}"
            )
        check_token_ids(
            OWNER,
            vocab_size,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
        )
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.cell = cell
        self.bidirectional_encoder = bidirectional_encoder
        self.attention = attention
        self.input_feeding = input_feeding
        self.combine_bias = combine_bias
        self.combine_activation = combine_activation
        self.decoder_init = decoder_init
        self.dropout = float(dropout)
        self.label_smoothing = float(label_smoothing)
        self.tie_word_embeddings = tie_word_embeddings
        self.output_bias = output_bias
        self.scale_embedding = scale_embedding
        self.position_embedding = position_embedding
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


# Every `save_pretrained` (Seq2SeqTrainer.save_model included) writes `auto_map` into config.json and copies
# this file and its flat siblings, so the folder loads with `trust_remote_code=True` where this package is absent.
RNNSeq2SeqConfig.register_for_auto_class()
