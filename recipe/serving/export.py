"""`python run_cola.py export --model_dir OUT [--int8] [--allow_int8_drop]`: a trained model to ONNX (and int8).

Writes `OUT/onnx/`: `model.onnx` (fp32, dynamic batch and sequence axes), the tokenizer and config beside
it, with --int8 `model_int8.onnx`, then re-checks the MCC of every backend on the run's dev splits
(recipe/serving/export_check.py) into `OUT/onnx/export_report.md` and a section of the model card.
The folder is built as `OUT/onnx.partial` and swapped in once it passes, so a re-export replaces the
previous one whole and a failed one leaves it untouched.

int8 is ONNX Runtime's dynamic quantization: the weights of every MatMul and Gemm (the attention
projections, feed-forward layers, pooler and classifier) stored as signed int8 with one scale per
output channel (per-tensor with --int8_per_tensor); activations quantized on the fly to uint8 per tensor
(`DynamicQuantizeLinear`, the only activation type dynamic quantization has), products in
`MatMulInteger`. Embeddings, LayerNorm, softmax and GELU stay fp32.

Exit status: 0; 2 for bad input (not a trained folder, a model the exporter cannot handle, fp32 ONNX
that does not match torch); 1 when int8 is not recommended and --allow_int8_drop is not given (the
folder and the report are written all the same).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import warnings
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from recipe.serving.export_check import (
    FP32_LOGIT_TOLERANCE,
    INT8,
    ONNX_FP32,
    TORCH,
    check_export,
    torch_runner,
    update_card,
    write_check_files,
)
from recipe.serving.onnx_backend import (
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    OnnxModelError,
    open_session,
    require_export_packages,
    session_runner,
)
from recipe.serving.predict import check_model_folder
from recipe.training.model import CheckpointError

logger = logging.getLogger(__name__)

# The weight-carrying products. The embedding table (Gather) stays fp32: a lookup gains no speed from int8,
# though quantizing it would shrink the file (not measured here).
INT8_OPS = ["MatMul", "Gemm"]
INT8_DROP_EXIT = 1
EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # the `export` extra; imported where used
# Two example sentences of different lengths: the exporter specialises a dimension it sees as 0 or 1.
EXAMPLE_SENTENCES = ["The cat sat on the mat.", "It rained."]


def check_trained_folder(model_dir: Path) -> None:
    """Refuse early what is not a trained model folder.

    Raises:
        CheckpointError: no folder, no config.json or no safetensors weights (names the path).
    """
    check_model_folder(model_dir)
    if not any(model_dir.glob("model*.safetensors")):
        raise CheckpointError(
            f"--model_dir {model_dir} has no model.safetensors: export reads safetensors weights only, as "
            "training writes them. Pass the --output_dir of a finished training run."
        )


def load_for_export(model_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The trained model (fp32, eval mode) and its fast tokenizer.

    Raises:
        CheckpointError: it does not load as a two-label classifier, or has no fast tokenizer.
    """
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, use_safetensors=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"--model_dir {model_dir} does not load as a sequence classifier with its tokenizer: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}."
        ) from err
    if model.config.num_labels != 2:
        raise CheckpointError(f"--model_dir {model_dir} has {model.config.num_labels} labels; CoLA has 2.")
    if not tokenizer.is_fast:
        raise CheckpointError(
            f"--model_dir {model_dir}: the ONNX backends need a fast tokenizer (tokenizer.json); this one is "
            f"{type(tokenizer).__name__}."
        )
    return model.eval(), tokenizer


def export_fp32(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """Export `model` to ONNX at `path`, batch and sequence axes dynamic, inputs named as the tokenizer's.

    Raises:
        CheckpointError: the exporter cannot handle the model (its first error line).
    """
    names = list(tokenizer.model_input_names)
    example = tokenizer(EXAMPLE_SENTENCES, padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer chatter
            # dynamo=True (torch.export + onnxscript): exact on this stack (logits within 1e-8 on BERT) and
            # binds inputs by name; the legacy exporter is deprecated and binds input_names by position.
            torch.onnx.export(
                model,
                (),
                str(path),
                kwargs={name: example[name] for name in names},
                input_names=names,
                output_names=["logits"],
                dynamic_shapes={name: {0: batch, 1: sequence} for name in names},
                dynamo=True,
                external_data=False,  # one self-contained file (models under 2 GB)
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; the user needs the first line and the model
        raise CheckpointError(
            f"torch.onnx.export cannot export {type(model).__name__} to {path}: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}."
        ) from err


def validate_onnx(path: Path) -> None:
    """The ONNX checker and an ONNX Runtime load, or an error naming `path`.

    Raises:
        OnnxModelError: the file is damaged or not a valid ONNX model.
    """
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except Exception as err:  # onnx raises ValidationError, DecodeError, ...
        raise OnnxModelError(
            f"{path} is not a valid ONNX model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})."
        ) from err
    open_session(path)


def quantize_int8(fp32_path: Path, int8_path: Path, per_channel: bool) -> None:
    """Dynamic int8 quantization (module doc): QInt8 weights of INT8_OPS, per channel unless told otherwise."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().disabled = True  # quantize_dynamic logs a pre-processing hint through the root logger
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=INT8_OPS,
        )
    finally:
        logging.getLogger().disabled = False


def build_export_parser() -> argparse.ArgumentParser:
    """Flags of `run_cola.py export`."""
    parser = argparse.ArgumentParser(
        prog="run_cola.py export",
        description="Export a trained model to ONNX (and int8) into MODEL_DIR/onnx/, re-checking the MCC of "
        "each backend on the run's dev splits (onnx/export_report.md and the model card).",
    )
    parser.add_argument("--model_dir", required=True, help="The --output_dir of a finished training run.")
    parser.add_argument("--int8", action="store_true", help="Also write model_int8.onnx (dynamic int8).")
    parser.add_argument(
        "--int8_per_tensor", action="store_true", help="One weight scale per tensor instead of per channel."
    )
    parser.add_argument(
        "--allow_int8_drop",
        action="store_true",
        help="Exit 0 even when the report marks int8 'not recommended'.",
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help="Where the run's CoLA data is now (default: the run's own --data_dir).",
    )
    return parser


def settings_lines(model_dir: Path, folder: Path, int8: bool, per_channel: bool) -> list[str]:
    """The report's opening: what was exported, how, and the files' sizes."""
    import onnx

    files = [FP32_FILE, *([INT8_FILE] if int8 else [])]
    sizes = ", ".join(f"`{name}` {(folder / name).stat().st_size / 1e6:.1f} MB" for name in files)
    lines = [
        f"- Model: `{model_dir.name}`; exported with `torch.onnx.export(dynamo=True)`, opset "
        f"{onnx.load(str(folder / FP32_FILE), load_external_data=False).opset_import[0].version}, torch "
        f"{torch.__version__}; files: {sizes}.",
        f"- fp32 tolerance: largest |logit difference| from torch <= {FP32_LOGIT_TOLERANCE:.0e}.",
    ]
    if int8:
        lines.append(
            f"- int8: onnxruntime `quantize_dynamic`, {'/'.join(INT8_OPS)} weights QInt8 "
            f"{'per channel' if per_channel else 'per tensor'}, activations uint8 per tensor (dynamic)."
        )
    return lines


def replace_folder(staging: Path, target: Path) -> None:
    """Swap `staging` in as `target`; the previous `target` goes only once the new one is in place."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def export_cli(argv: list[str]) -> int:
    """Entry point of `python run_cola.py export`; returns the exit status.

    Raises:
        CheckpointError: bad input, an export that fails or fp32 ONNX that does not match torch
            (cli() prints it and exits 2).
        DataError: the run's data is not where run_args.json (or --data_dir) says.
    """
    options = build_export_parser().parse_args(argv)
    try:
        require_export_packages(EXPORT_PACKAGES)
    except OnnxModelError as err:
        raise CheckpointError(str(err)) from err
    model_dir = Path(options.model_dir)
    check_trained_folder(model_dir)
    model, tokenizer = load_for_export(model_dir)
    staging = model_dir / (ONNX_DIR + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    export_fp32(model, tokenizer, staging / FP32_FILE)
    model.config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        validate_onnx(staging / FP32_FILE)
        runners = {TORCH: torch_runner(model), ONNX_FP32: session_runner(open_session(staging / FP32_FILE))}
        if options.int8:
            quantize_int8(staging / FP32_FILE, staging / INT8_FILE, per_channel=not options.int8_per_tensor)
            validate_onnx(staging / INT8_FILE)
            runners[INT8] = session_runner(open_session(staging / INT8_FILE))
    except OnnxModelError as err:
        raise CheckpointError(str(err)) from err
    check = check_export(model_dir, options.data_dir, tokenizer, runners)
    settings = settings_lines(model_dir, staging, options.int8, not options.int8_per_tensor)
    report = write_check_files(check, staging, settings)
    if not check.fp32_matches():
        raise CheckpointError(
            f"the ONNX fp32 model does not match torch (logits beyond {FP32_LOGIT_TOLERANCE:.0e}); see {report}. "
            f"{model_dir / ONNX_DIR} is left as it was."
        )
    replace_folder(staging, model_dir / ONNX_DIR)
    update_card(model_dir, check)
    print(f"Exported to {model_dir / ONNX_DIR}; report: {model_dir / ONNX_DIR / report.name}")
    problems = check.int8_problems()
    if problems and not options.allow_int8_drop:
        print(
            f"run_cola.py export: int8 is not recommended ({'; '.join(problems)}). The files are written; "
            "pass --allow_int8_drop to accept it, or serve model.onnx (--backend onnx).",
            file=sys.stderr,
        )
        return INT8_DROP_EXIT
    return 0
