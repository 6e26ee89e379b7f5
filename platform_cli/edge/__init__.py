"""Models for devices (端预测): a registered version exported as TensorFlow Lite with what a device
needs to feed it. Nothing is imported here: export.py needs TensorFlow and MLflow, device.py
LiteRT, and each is loaded only by what uses it.

- golden.py    golden hashing vectors: raw values and the ids Plinth's transform gives them (pure)
- manifest.py  the export's manifest: inputs and outputs, quantization, sizes, agreement (pure)
- export.py    `plinth model export`: convert, compare, write the export whole, register it
- device.py    an export as a device runs it: LiteRT and Plinth's numpy hashing, no TensorFlow

An export directory holds model.tflite, feature_spec.json, golden_vectors.json and manifest.json.
"""
