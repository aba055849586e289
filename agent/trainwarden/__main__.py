from trainwarden.cli.main import main

raise SystemExit(main())
