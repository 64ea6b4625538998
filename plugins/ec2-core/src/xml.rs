//! A small element tree over quick-xml: enough to read EC2 responses by element name,
//! whatever namespace the endpoint answers in.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One XML element: local name, text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// Text content, unescaped and trimmed.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element at the slash-separated `path` of child names.
    pub fn at(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, name| e.child(name))
    }

    /// The text at `path`, if present.
    pub fn text_at(&self, path: &str) -> Option<&str> {
        self.at(path).map(|e| e.text.as_str())
    }

    /// The `item` children of the list at `path` (`<fooSet><item>...`).
    pub fn items(&self, path: &str) -> impl Iterator<Item = &Element> {
        self.at(path)
            .into_iter()
            .flat_map(|set| set.children.iter().filter(|c| c.name == "item"))
    }
}

/// Parses a whole document into its root element.
pub fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) => stack.push(Element {
                name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                ..Default::default()
            }),
            Ok(Event::Empty(start)) => {
                let element = Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Default::default()
                };
                stack
                    .last_mut()
                    .ok_or("unbalanced document")?
                    .children
                    .push(element);
            }
            Ok(Event::Text(text)) => {
                // Entity references arrive as their own events (below), so text is plain.
                let text = text.decode().map_err(|e| format!("bad text: {e}"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                let name = String::from_utf8_lossy(&r).into_owned();
                let resolved = quick_xml::escape::resolve_predefined_entity(&name)
                    .map(str::to_owned)
                    .or_else(|| r.resolve_char_ref().ok().flatten().map(|c| c.to_string()))
                    .ok_or_else(|| format!("unknown entity &{name};"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Ok(Event::CData(data)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Ok(Event::End(_)) => {
                let mut done = stack.pop().ok_or("unbalanced document")?;
                done.text = done.text.trim().to_string();
                stack
                    .last_mut()
                    .ok_or("unbalanced document")?
                    .children
                    .push(done);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("malformed XML at {}: {e}", reader.error_position())),
        }
    }
    let mut document = stack.pop().ok_or("empty document")?;
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    document
        .children
        .pop()
        .ok_or_else(|| "empty document".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_moto_reply_whatever_the_namespace() {
        assert_eq!(parse("<a> x &amp; y </a>").unwrap().text, "x & y");
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationId>r-529d</reservationId>
<instancesSet><item><instanceId>i-c8fa</instanceId><instanceState><code>0</code><name>pending</name></instanceState>
<tagSet><item><key>a&amp;b</key><value/></item></tagSet></item></instancesSet><requestId>x</requestId></RunInstancesResponse>"#,
        )
        .unwrap();
        assert_eq!(doc.name, "RunInstancesResponse");
        let item = doc.items("instancesSet").next().unwrap();
        assert_eq!(item.text_at("instanceId"), Some("i-c8fa"));
        assert_eq!(item.text_at("instanceState/name"), Some("pending"));
        assert_eq!(
            item.items("tagSet").next().unwrap().text_at("key"),
            Some("a&b")
        );
        assert!(parse("<a><b></a>").is_err());
    }
}
