"""A data frame with string categories and missing values, through a Pipeline, to encrypted predictions.

The usual scikit-learn preprocessing goes in front of the estimator: numbers imputed by their
median (with a missing-value indicator) and standardized, strings given a "missing" category and
one-hot encoded. The estimator takes the ColumnTransformer's output as it is, a scipy sparse matrix
when one-hot columns dominate. The preprocessing runs in the clear on the client; only the network
runs encrypted, so the circuit is compiled on the transformed training data (the calibration
sample the estimator keeps at fit).

Run with:  .venv/bin/python examples/tabular_pipeline.py [--rows 2] [--samples 1200]
"""

import argparse
import warnings

from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from fhe_estimators import NeuralNetClassifier
from fhe_estimators.benchmarking.tabular import make_churn, preprocessor

warnings.filterwarnings("ignore", message="Named tensors")  # torch's, from brevitas

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--rows", type=int, default=2, help="test rows predicted encrypted")
parser.add_argument("--samples", type=int, default=1200, help="rows of the generated data frame")
args = parser.parse_args()

frame, y, _ = make_churn(n_samples=args.samples)
print(f"columns: {dict(frame.dtypes.astype(str))}")
print(f"missing values per column: {frame.isna().sum()[frame.isna().any()].to_dict()}")
frame_train, frame_test, y_train, y_test = train_test_split(frame, y, test_size=0.25, random_state=0, stratify=y)

# sparse_threshold=1.0: the ColumnTransformer hands the estimator a scipy sparse matrix.
pipeline = make_pipeline(
    preprocessor(frame).set_params(sparse_threshold=1.0),
    NeuralNetClassifier(n_w_bits=3, n_a_bits=3, n_accum_bits=10, random_state=0),
)
pipeline.fit(frame_train, y_train)
encoded = pipeline[:-1].transform(frame_test)
print(f"the network reads {encoded.shape[1]} columns ({type(encoded).__name__})")

pipeline[-1].compile()  # calibrated on the transformed training sample kept at fit
# Pipeline.predict passes fhe= on to the estimator (Pipeline.score does not: it scores in the clear).
for mode in ("disable", "simulate"):
    print(f"accuracy, fhe={mode!r}: {accuracy_score(y_test, pipeline.predict(frame_test, fhe=mode)):.3f}")
rows = frame_test[: args.rows]
encrypted, simulated = pipeline.predict(rows, fhe="execute"), pipeline.predict(rows, fhe="simulate")
print(f"encrypted predictions: {encrypted.tolist()}, simulated: {simulated.tolist()}, true: {y_test[: args.rows].tolist()}")
