"""The shared image pipeline: quality gate, hair removal, segmentation, ROI crop.

One implementation in numpy + OpenCV, used by the device and imported by training,
so preprocessing is bit-for-bit identical in both places.
"""
