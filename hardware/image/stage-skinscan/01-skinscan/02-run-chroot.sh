#!/bin/bash -e
# Inside the image (pi-gen feeds this file to bash in a chroot): the service user,
# the venv with the app wheel, /etc/skinscan/config.toml and the enabled units. The
# Debian packages came from 00-packages-nr, so apt is not run again. No device key
# is made here: each device creates its own at first start.
args=(install --image --no-apt --wheel /opt/skinscan/share/dist)
if [ -f /opt/skinscan/share/clinic.pub ]; then
	args+=(--clinic-key /opt/skinscan/share/clinic.pub)
fi
/opt/skinscan/share/hardware/pi/provision.sh "${args[@]}"
