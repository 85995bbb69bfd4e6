"""An exported model served: versions on disk, every runtime, the REST API, the inside view.

  contract       what a version is: its files, its signature's input and output names
  export         a trained model as the next version (SavedModel, ONNX, LiteRT float, int8)
  runtimes       one version run by TensorFlow, ONNX Runtime or LiteRT behind one function
  versions       versions loaded and followed as new ones appear; a file or a run classified
  rest_formats   TensorFlow Serving's JSON formats, free of HTTP
  rest_api       the Starlette app and kerasnets-serve as one call
  inside         what the network sees in a drawing (feature maps, saliency, layer table)

May import: kerasnets.errors, fileio, data, models. Never training. Importing a module here
loads no TensorFlow: only the function that runs it does, so the serving install (without
TensorFlow) predicts and serves LiteRT and ONNX versions.
"""
