#!/bin/bash -e
# pi-gen runs this first: start from the previous stage's root filesystem.
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
