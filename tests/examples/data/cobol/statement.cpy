000100* A bank's account statement extract, as the host writes it: a header record, then one
000200* detail record per transaction. Segment id in column 1: H header, D detail.
000300 01  STMT-REC.
000400     05  REC-TYPE              PIC X.
000500     05  HEADER-DATA.
000600         10  ACCOUNT-NO        PIC X(12).
000700         10  BRANCH            PIC 9(4).
000800         10  OPENING-BALANCE   PIC S9(11)V99 COMP-3.
000900         10  HOLDER-NAME       PIC X(20).
001000     05  DETAIL-DATA REDEFINES HEADER-DATA.
001100         10  TXN-DATE          PIC 9(8).
001200         10  TXN-AMOUNT        PIC S9(9)V99 COMP-3.
001300         10  TXN-CODE          PIC S9(4) COMP.
001400         10  MEMO              PIC X(16).
001500         10  FILLER            PIC X(11).
