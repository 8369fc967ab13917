"""The lab: the whole Hub on one machine without Proxmox (``hubctl lab``)."""
