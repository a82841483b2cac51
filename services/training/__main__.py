from lumenal.training import server

server.main()
