#!/bin/bash -e
# On the build host: copy the app wheel, units, provisioning script and docs into
# the image as /opt/skinscan/share (hardware/image/assemble.sh put them in files/share).
if [ ! -d files/share/dist ]; then
	echo "01-skinscan: files/share is missing: assemble the stage with hardware/image/assemble.sh" >&2
	exit 1
fi
install -d -m 755 "${ROOTFS_DIR}/opt/skinscan"
rm -rf "${ROOTFS_DIR}/opt/skinscan/share"
cp -r files/share "${ROOTFS_DIR}/opt/skinscan/share"
chown -R root:root "${ROOTFS_DIR}/opt/skinscan/share"
chmod 755 "${ROOTFS_DIR}/opt/skinscan/share/hardware/pi/provision.sh"
