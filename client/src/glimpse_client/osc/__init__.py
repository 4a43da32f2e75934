"""The python-openstackclient plugin: ``openstack image task list --image`` and a waiting
``openstack image import``. ``plugin`` is the module OSC loads; ``commands`` holds the commands."""
