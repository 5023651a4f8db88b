       01  STMT-REC.
           05  REC-TYPE              PIC X.
           05  HEADER-DATA.
               10  ACCOUNT-NO        PIC X(12).
               10  BRANCH            PIC 9(4).
               10  OPENING-BALANCE   PIC S9(11)V99.
               10  HOLDER-NAME       PIC X(20).
           05  DETAIL-DATA REDEFINES HEADER-DATA.
               10  TXN-DATE          PIC 9(8).
               10  TXN-AMOUNT        PIC S9(9)V99.
               10  TXN-CODE          PIC S9(4).
               10  MEMO              PIC X(16).
