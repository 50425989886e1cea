// The Apache Avro (Java) 1.11.4 oracle for klua's schema resolution (tests/avro/java_resolution_test.py).
//
// Reads cases as JSON lines on stdin: {"id": N, "writer": SCHEMA, "reader": SCHEMA, "value": "AVRO JSON TEXT"}
// (value in the Avro JSON encoding of the writer schema). For each case it decodes the value with the
// writer (JsonDecoder), encodes it in the binary encoding (GenericDatumWriter), decodes those bytes with
// GenericDatumReader(writer, reader) and writes the result in the Avro JSON encoding of the reader:
//   {"id": N, "bytes": "HEX", "writer_json": "AVRO JSON TEXT", "ok": true, "result": "AVRO JSON TEXT"}
//   (writer_json: the value in the writer's JSON encoding, as Java prints it)
//   {"id": N, "bytes": "HEX", "ok": false, "error": "what Java raised"}
//   {"id": N, "bad_case": "..."}   (the writer value itself did not encode: a broken case)
// One JVM runs the whole batch. Run: java -cp JARS tests/avro/java/ResolveOracle.java < cases.jsonl
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.io.JsonEncoder;

public class ResolveOracle {
  public static void main(String[] args) throws Exception {
    ObjectMapper mapper = new ObjectMapper();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isBlank()) continue;
      JsonNode c = mapper.readTree(line);
      ObjectNode o = mapper.createObjectNode();
      o.set("id", c.get("id"));
      byte[] bytes;
      Schema writer, reader;
      try {
        // A fresh parser per schema: the names of one case must not leak into the next.
        writer = new Schema.Parser().parse(c.get("writer").toString());
        reader = new Schema.Parser().parse(c.get("reader").toString());
        Object datum = new GenericDatumReader<Object>(writer)
            .read(null, DecoderFactory.get().jsonDecoder(writer, c.get("value").asText()));
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(buf, null);
        new GenericDatumWriter<Object>(writer).write(datum, enc);
        enc.flush();
        bytes = buf.toByteArray();
        ByteArrayOutputStream wj = new ByteArrayOutputStream();
        JsonEncoder wje = EncoderFactory.get().jsonEncoder(writer, wj);
        new GenericDatumWriter<Object>(writer).write(datum, wje);
        wje.flush();
        o.put("writer_json", wj.toString(StandardCharsets.UTF_8));
      } catch (Exception e) {
        o.put("bad_case", String.valueOf(e));
        out.println(o.toString());
        continue;
      }
      StringBuilder hex = new StringBuilder();
      for (byte b : bytes) hex.append(String.format("%02x", b & 0xff));
      o.put("bytes", hex.toString());
      try {
        Object result = new GenericDatumReader<Object>(writer, reader)
            .read(null, DecoderFactory.get().binaryDecoder(bytes, null));
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        JsonEncoder je = EncoderFactory.get().jsonEncoder(reader, buf);
        new GenericDatumWriter<Object>(reader).write(result, je);
        je.flush();
        o.put("ok", true);
        o.put("result", buf.toString(StandardCharsets.UTF_8));
      } catch (Exception e) {
        o.put("ok", false);
        o.put("error", String.valueOf(e));
      }
      out.println(o.toString());
    }
    out.flush();
  }
}
