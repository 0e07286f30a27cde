import sys

from perception_client.cli import main

sys.exit(main())
