from lumenal.modelserver import server

raise SystemExit(server.main())
