from lumenal.inference import server

raise SystemExit(server.main())
