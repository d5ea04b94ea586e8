"""Detection: model files, backends, preprocessing, YOLO decoding and NMS, assembled into a Detector."""
