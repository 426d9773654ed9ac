"""Matthews correlation coefficient as an `evaluate` metric module.

Lives in this repository and is loaded by path (`evaluate.load(<this file>)`): loading
"matthews_correlation" by name downloads code from the Hugging Face Hub and fails offline.
Each import stands on its own line because evaluate's import scanner misreads
`import a, b` lines.
"""

import math

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef

_DESCRIPTION = """
Matthews correlation coefficient (MCC) between binary predictions and references, in [-1, 1].
A constant prediction (or constant references) has no correlation to measure: MCC is 0, never NaN.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted labels.
    references (list of int): gold labels.
    sample_weight (list of float, optional): per-example weights.
Returns:
    matthews_correlation (float): the MCC.
Example:
    >>> mcc = evaluate.load("recipe/metrics/matthews_correlation/matthews_correlation.py")
    >>> mcc.compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])
    {'matthews_correlation': 0.5773502691896258}
"""

_CITATION = """
@article{matthews1975comparison,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W},
  journal={Biochimica et Biophysica Acta (BBA)-Protein Structure},
  volume={405}, number={2}, pages={442--451}, year={1975}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatthewsCorrelation(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"
            ],
        )

    def _compute(self, predictions, references, sample_weight=None) -> dict[str, float]:
        if len(predictions) == 0:
            raise ValueError("matthews_correlation: no predictions to score (an empty evaluation set?)")
        value = float(matthews_corrcoef(references, predictions, sample_weight=sample_weight))
        # sklearn already returns 0.0 for a constant prediction; keep the guarantee explicit.
        return {"matthews_correlation": 0.0 if math.isnan(value) else value}
