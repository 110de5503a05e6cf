import sys

from talking_faces.cli.main import main

sys.exit(main())
